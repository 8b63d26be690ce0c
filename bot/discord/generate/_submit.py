"""The one way in for every request: by command, button, modal, menu or reaction.

:meth:`Actions.submit` checks what can be checked at once (answering within Discord's 3 seconds
with a precise, private message). A request with nothing to download (``/imagine``, a button
whose images are a job's stored inputs) is then admitted as a job, and only then deferred: the
job's row is what a restart finishes. One with uploads (or on the shared queue of PostgreSQL)
is stored as an intake, so a restart finishes it, deferred, its uploads read and normalized,
and handed to the job runner. Results are posted later by :mod:`bot.discord.generate._delivery`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Collection
from dataclasses import dataclass
from functools import partial
from typing import Any

import discord

from bot.config import QuotaSettings
from bot.db import Sessions
from bot.db.models import Job
from bot.discord.errors import GuildOnly
from bot.discord.generate._backends import ServerBackends
from bot.discord.generate._intakes import age_restricted, intake_origin, intake_request
from bot.discord.generate._uploads import UploadReader, first_image, precheck
from bot.discord.i18n import Catalog
from bot.generation import ImageOrder, check_order
from bot.jobs import JobOrigin, JobRunner
from bot.jobs.spool import DATABASE_ERRORS
from bot.moderation.blocklist import Blocklist
from bot.providers import Operation
from bot.providers.registry import BackendSet
from bot.quotas.admission import check_origin
from bot.quotas.kept_defaults import KeptDefaults
from bot.quotas.member_defaults import (
    Ignored,
    MemberDefaults,
    order_check,
    with_defaults,
)
from bot.quotas.ratelimit import MemberRequestLimiter

Upload = tuple[discord.Attachment, str]


@dataclass(eq=False)
class Actions:
    quotas: QuotaSettings
    #: Every configured backend; an order runs on the one it names (see bot.jobs.backends).
    backends: BackendSet
    runner: JobRunner
    sessions: Sessions
    #: The one reader of members' uploads (a bound on concurrent downloads for every path).
    uploads: UploadReader
    #: Every way in takes one of the member's requests per minute.
    requests: MemberRequestLimiter
    #: The checkpoints and samplers of each server's backend, for autocomplete.
    servers: ServerBackends
    #: The operator's and the server's blocked terms, checked before anything is stored.
    blocklist: Blocklist
    #: The notes on a member's defaults left out of a request are in their language.
    catalog: Catalog
    #: Members' own defaults (/settings), kept a few seconds instead of read per request.
    defaults: KeptDefaults

    @property
    def upload_limit(self) -> int:
        return self.uploads.limit

    # --- the one way in ------------------------------------------------------------------------

    async def submit(
        self,
        interaction: discord.Interaction[Any],
        order: ImageOrder,
        uploads: list[Upload] = (),  # type: ignore[assignment]
        *,
        command: str,
        source: tuple[int, int | None] | None = None,
        typed: Collection[str] | None = None,
        private: bool | None = None,
        parent_private: bool = False,
    ) -> Job:
        """Check, store the request, defer, read uploads, queue; BotError early when it can.

        ``typed``: the options the member typed in a new request (a command's), whose other
        options take the member's own defaults (``/settings``); None for an order made from
        a result (a button's), which keeps that result's settings.

        ``private``: the request's own ``private`` option (None: not given). Without it the
        result is private when the member's default says so, or (an action on a result) when
        ``parent_private``, the result acted on was: a private picture's variations stay
        private. The choice is stored with the intake, so a restart keeps it.

        Everything that costs nothing is checked before anything that costs something: the
        server, the member's request rate, the order, the uploads' metadata, the rules, the
        queue caps and the blocked terms (one indexed read) come before the defer; the quotas
        (read-only) before any download. The request is durable before it is acknowledged:
        without uploads to read, on this process's own queue, as its admitted job (one write
        instead of two, and a refusal answered at once rather than after "thinking…"); else
        as an intake row, until its uploads are read and its job admitted.
        """
        if interaction.guild_id is None and not self.quotas.dm_enabled:
            raise GuildOnly()
        origin = self._origin(interaction, source)
        check_origin(self.quotas, origin)
        self.requests.take(interaction.user.id)
        order = dataclasses.replace(order, user_id=str(interaction.user.id))
        order = await self.runner.backends.resolve(order, interaction.guild_id)
        ignored: list[Ignored] = []
        defaults = await self.defaults.of(interaction.user.id)
        if typed is not None:
            order, ignored = await self._with_defaults(interaction, order, defaults, typed)
        if private is None:
            private = defaults.private or parent_private
        origin = dataclasses.replace(origin, private=private)
        check_order(self.backends, order, pictures=sum(s != "mask" for _, s in uploads))
        for attachment, subject in uploads:
            precheck(attachment, self.upload_limit, subject)
        self.runner.precheck(order, origin)
        # Every way in, the prompt kept by Redo and Retry too: the rules may have changed.
        await self.blocklist.check(
            guild_id=origin.guild_id, user_id=origin.user_id, command=command, prompt=order.prompt
        )
        if not uploads and self.runner.admits_before_acknowledging:
            # Nothing to download: the job's row, committed before the defer, is the durable
            # record (no intake), and the refusals of the admission are answered at once.
            job = await self.runner.submit(
                order, origin, command=command, acknowledge=partial(_defer, interaction)
            )
        else:
            job = await self._submit_intake(interaction, order, uploads, origin, command, source)
        if ignored:
            await self._tell_ignored(interaction, ignored)
        return job

    async def _submit_intake(
        self,
        interaction: discord.Interaction[Any],
        order: ImageOrder,
        uploads: list[Upload],
        origin: JobOrigin,
        command: str,
        source: tuple[int, int | None] | None,
    ) -> Job:
        """Store the request (an intake), defer, read the uploads, queue: for uploads, which
        take a while to read after the defer, and for the shared queue, where another process
        could claim a job admitted before the defer and report on it first."""
        # Durable before it is acknowledged: a process killed after "thinking…" leaves the
        # intake, and the next start finishes it (bot.discord.generate._intakes).
        intake_id = await self.runner.intakes.open(
            intake_origin(interaction),
            command,
            intake_request(interaction, order, uploads, source, private=origin.private),
        )
        try:
            await _defer(interaction)
            if uploads:
                await self.runner.would_fit(order, origin)
            order = await self.uploads.read_order(
                order, [(a.url, a.size, subject) for a, subject in uploads]
            )
            job = await self.runner.submit(order, origin, command=command, intake_id=intake_id)
        except Exception:
            # Refused: the caller answers at once, so nothing is left for a restart to finish.
            with contextlib.suppress(*DATABASE_ERRORS):
                await self.runner.intakes.drop(intake_id)
            raise
        return job

    async def _with_defaults(
        self,
        interaction: discord.Interaction[Any],
        order: ImageOrder,
        defaults: MemberDefaults,
        typed: Collection[str],
    ) -> tuple[ImageOrder, list[Ignored]]:
        """``order`` with the member's ``defaults`` for what they left out, each only where
        this server's backend, the operator's and the model's rules allow."""
        if not defaults.chosen():
            return order, []
        guild_id = interaction.guild_id
        return with_defaults(
            order,
            defaults,
            typed,
            backends=self.backends,
            guild_id=guild_id,
            server_backend=await self.runner.backends.chosen_by_admins(guild_id),
            check=order_check(self.backends, self.quotas),
        )

    async def _tell_ignored(
        self, interaction: discord.Interaction[Any], ignored: list[Ignored]
    ) -> None:
        """A private note: which of the member's defaults this request left out, and why."""
        locale = interaction.locale
        lines = [
            self.catalog.text(
                "settings.member.ignored",
                locale,
                setting=self.catalog.text(f"choice.member_default.{item.name}", locale),
                value=item.value[:100],
            )
            for item in ignored
        ]
        with contextlib.suppress(discord.HTTPException):  # the request is queued all the same
            await interaction.followup.send("\n".join(lines), ephemeral=True)

    def _origin(
        self, interaction: discord.Interaction[Any], source: tuple[int, int | None] | None
    ) -> JobOrigin:
        roles = getattr(interaction.user, "roles", ())
        return JobOrigin(
            user_id=interaction.user.id,
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            parent_channel_id=getattr(interaction.channel, "parent_id", None),
            role_ids=tuple(role.id for role in roles),
            locale=interaction.locale.value,
            application_id=interaction.application_id,
            interaction_token=interaction.token,
            interaction_at=interaction.created_at,
            attachment_size_limit=interaction.filesize_limit,
            source_job_id=source[0] if source else None,
            source_index=source[1] if source else None,
            age_restricted=age_restricted(interaction.channel),
        )

    # --- commands ------------------------------------------------------------------------------

    async def imagine(
        self,
        interaction: discord.Interaction[Any],
        order: ImageOrder,
        typed: Collection[str] = (),
        private: bool | None = None,
    ) -> None:
        await self.submit(interaction, order, command="imagine", typed=typed, private=private)

    async def edit(
        self,
        interaction: discord.Interaction[Any],
        order: ImageOrder,
        image: discord.Attachment,
        mask: discord.Attachment | None,
        typed: Collection[str] = (),
        private: bool | None = None,
    ) -> None:
        uploads: list[Upload] = [(image, "image")]
        if mask is not None:
            uploads.append((mask, "mask"))
        await self.submit(interaction, order, uploads, command="edit", typed=typed, private=private)

    async def blend(
        self,
        interaction: discord.Interaction[Any],
        order: ImageOrder,
        images: list[discord.Attachment],
        private: bool | None = None,
    ) -> None:
        """``/blend``: one edit of several pictures; the first is the order's image, the
        others its ``extra_images`` (subjects "image2"...), in the member's order."""
        uploads: list[Upload] = [
            (image, "image" if index == 1 else f"image{index}")
            for index, image in enumerate(images, 1)
        ]
        await self.submit(interaction, order, uploads, command="blend", private=private)

    async def vary(
        self,
        interaction: discord.Interaction[Any],
        order: ImageOrder,
        image: discord.Attachment,
        typed: Collection[str] = (),
        private: bool | None = None,
    ) -> None:
        await self.submit(
            interaction, order, [(image, "image")], command="vary", typed=typed, private=private
        )

    async def vary_message(
        self, interaction: discord.Interaction[Any], message: discord.Message
    ) -> None:
        """The "Vary image" context menu: the first image of any message."""
        attachment = first_image(message)
        await self.submit(
            interaction,
            ImageOrder(Operation.VARY),
            [(attachment, "image")],
            command="context-menu",
            typed=(),
        )


async def _defer(interaction: discord.Interaction[Any]) -> None:
    """Answer "thinking…", privately: the status message its place and result replace."""
    if not interaction.response.is_done():
        await interaction.response.defer(ephemeral=True, thinking=True)
