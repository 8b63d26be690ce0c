"""What happens when a member asks for images: by command, button, modal, menu or reaction.

Every path ends in :meth:`Actions.submit`, which checks what can be checked at once (answering
within Discord's 3 seconds with a precise, private message), then stores the request (an intake,
so a restart finishes it), defers, reads the uploads and hands the order to the job runner.
Results are posted later by :mod:`bot.discord.generate._delivery`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from typing import TYPE_CHECKING, Any

import discord

from bot.db.models import Job, JobStatus
from bot.discord.errors import (
    BotMissingPermissions,
    CannotCancel,
    GuildOnly,
    NothingToRemix,
    NotRequester,
    ResultGone,
    ResultTooOld,
)
from bot.discord.generate._intakes import intake_origin, intake_request
from bot.discord.generate._provenance import check_result_here, check_same_place
from bot.discord.generate._uploads import UploadReader, first_image, precheck
from bot.discord.generate._views import REMIX_PROMPT, remix_modal_id
from bot.discord.i18n import Catalog
from bot.discord.tree import reports_errors
from bot.generation import ImageOrder, check_order
from bot.jobs import JobOrigin, JobRunner, store
from bot.jobs.admission import check_origin
from bot.jobs.intake import close_intake
from bot.jobs.spool import DATABASE_ERRORS
from bot.jobs.store import Sessions
from bot.providers import Operation
from bot.quotas.ratelimit import MemberRequestLimiter

if TYPE_CHECKING:
    from bot.discord.bot import ImageBot

log = logging.getLogger(__name__)

Upload = tuple[discord.Attachment, str]


class Actions:
    def __init__(self, bot: ImageBot) -> None:
        self.bot = bot
        #: Interrupted jobs whose Retry click is being handled: a double click runs one retry.
        self._retrying: set[int] = set()
        #: Every way in takes one of the member's requests per minute.
        self.requests = MemberRequestLimiter(bot.settings.jobs.member_requests_per_minute)
        #: The one reader of members' uploads (a bound on concurrent downloads for every path).
        self.uploads = UploadReader(bot.engine.http, bot.engine.images)

    @property
    def catalog(self) -> Catalog:
        return self.bot.catalog

    @property
    def sessions(self) -> Sessions:
        return self.bot.storage.sessions

    @property
    def runner(self) -> JobRunner:
        return self.bot.runner

    @property
    def upload_limit(self) -> int:
        return self.bot.engine.images.limits.max_bytes

    # --- the one way in ------------------------------------------------------------------------

    async def submit(
        self,
        interaction: discord.Interaction[Any],
        order: ImageOrder,
        uploads: list[Upload] = (),  # type: ignore[assignment]
        *,
        command: str,
        source: tuple[int, int | None] | None = None,
    ) -> Job:
        """Check, store the request, defer, read uploads, queue; BotError early when it can.

        Everything that costs nothing is checked before anything that costs something: the
        server, the member's request rate, the order, the uploads' metadata, the rules and the
        queue caps come before the defer; the quotas (read-only) before any download. The
        request is durable (an intake row) before it is acknowledged.
        """
        if interaction.guild_id is None and not self.bot.settings.quotas.dm_enabled:
            raise GuildOnly()
        origin = self._origin(interaction, source)
        check_origin(self.bot.settings.quotas, origin)
        self.requests.take(interaction.user.id)
        order = dataclasses.replace(order, user_id=str(interaction.user.id))
        check_order(self.bot.engine.provider, order)
        for attachment, subject in uploads:
            precheck(attachment, self.upload_limit, subject)
        self.runner.precheck(order, origin)
        # Durable before it is acknowledged: a process killed after "thinking…" leaves the
        # intake, and the next start finishes it (bot.discord.generate._intakes).
        intake_id = await self.runner.intakes.open(
            intake_origin(interaction),
            command,
            intake_request(interaction, order, uploads, source),
        )
        try:
            if not interaction.response.is_done():
                await interaction.response.defer(ephemeral=True, thinking=True)
            if uploads:
                await self.runner.would_fit(order, origin)
            files = await self.uploads.read_all(
                [(a.url, a.size, subject) for a, subject in uploads]
            )
            if files:
                order = dataclasses.replace(
                    order, image=files.get("image", order.image), mask=files.get("mask", order.mask)
                )
            return await self.runner.submit(order, origin, command=command, intake_id=intake_id)
        except Exception:
            # Refused: the caller answers at once, so nothing is left for a restart to finish.
            with contextlib.suppress(*DATABASE_ERRORS):
                await close_intake(self.sessions, intake_id)
            raise

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
        )

    # --- commands ------------------------------------------------------------------------------

    async def imagine(self, interaction: discord.Interaction[Any], order: ImageOrder) -> None:
        await self.submit(interaction, order, command="imagine")

    async def edit(
        self,
        interaction: discord.Interaction[Any],
        order: ImageOrder,
        image: discord.Attachment,
        mask: discord.Attachment | None,
    ) -> None:
        uploads: list[Upload] = [(image, "image")]
        if mask is not None:
            uploads.append((mask, "mask"))
        await self.submit(interaction, order, uploads, command="edit")

    async def vary(
        self, interaction: discord.Interaction[Any], order: ImageOrder, image: discord.Attachment
    ) -> None:
        await self.submit(interaction, order, [(image, "image")], command="vary")

    async def vary_message(
        self, interaction: discord.Interaction[Any], message: discord.Message
    ) -> None:
        """The "Vary image" context menu: the first image of any message."""
        attachment = first_image(message)
        await self.submit(
            interaction, ImageOrder(Operation.VARY), [(attachment, "image")], command="context-menu"
        )

    # --- buttons and modals on results ---------------------------------------------------------

    async def _result_job(self, interaction: discord.Interaction[Any], job_id: int) -> Job:
        """The job behind a result's button or modal; ResultGone once the result was deleted.

        Only a result of this server, clicked on the result's own message, is acted on: the id
        in a custom_id is the client's to forge (see :func:`check_result_here`). A job that
        succeeded but whose delivery is not recorded yet counts as a result: its message can
        be on screen a moment before the database says where it went.
        """
        job = await store.get_job(self.sessions, job_id)
        if job is None:
            raise ResultGone()
        check_same_place(interaction, job)
        gone = job.status is not JobStatus.DELIVERED or job.result_message_id is None
        if gone and job.status is not JobStatus.SUCCEEDED:
            raise ResultGone()
        await check_result_here(self.bot, self.sessions, interaction, job)
        return job

    @reports_errors
    async def vary_result(
        self, interaction: discord.Interaction[Any], job_id: int, index: int
    ) -> None:
        job = await self._result_job(interaction, job_id)
        if interaction.message is None:
            raise ResultGone()
        attachment = result_attachment(interaction.message, index)
        await self.submit(
            interaction,
            self.vary_order(job),
            [(attachment, "image")],
            command="vary-button",
            source=(job_id, index),
        )

    async def _kept_order(self, job: Job) -> ImageOrder:
        """The order ``job`` was made from, to run again; ResultTooOld once its uploads are gone.

        Uploads are kept ``[storage] retention_days``; a prompt alone is kept with the ledger,
        so results made from a prompt can be redone and remixed at any age.
        """
        order = await store.order_of(self.sessions, job)
        if uploads_gone(order):
            raise ResultTooOld(days=self.bot.settings.storage.retention_days)
        return order

    async def _source_image(self, job: Job) -> discord.Attachment:
        """The image a variation of a result was made from, read back from that result's
        messages on Discord; ResultTooOld when ``job`` is no such variation or it is gone."""
        too_old = ResultTooOld(days=self.bot.settings.storage.retention_days)
        if job.operation != Operation.VARY.value or job.source_job_id is None:
            raise too_old
        source = await store.get_job(self.sessions, job.source_job_id)
        if source is None:
            raise too_old
        for channel_id, message_id in await store.messages_of(self.sessions, source):
            try:
                message = await self.bot.delivery.fetch_message(channel_id or 0, message_id)
                return result_attachment(message, job.source_index or 0)
            except ResultGone:
                continue  # deleted, or the image is on another part of the result
        raise too_old

    def vary_order(self, job: Job) -> ImageOrder:
        """Variations of a result: as many as the result had, with its model when it can."""
        spec = self.bot.engine.provider.spec_for(job.model)
        if not spec.supports(Operation.VARY):
            spec = self.bot.engine.provider.spec_for(None)
        n = min(job.n_requested, spec.max_n)
        size = job.size if job.size and spec.allows_size(job.size) else None
        return ImageOrder(Operation.VARY, n=n, size=size, model=spec.name)

    @reports_errors
    async def redo(self, interaction: discord.Interaction[Any], job_id: int) -> None:
        job = await self._result_job(interaction, job_id)
        order = await store.order_of(self.sessions, job)
        uploads: list[Upload] = []
        if uploads_gone(order):
            # Pruned: a variation of a result reads the image back from that result.
            uploads.append((await self._source_image(job), "image"))
        await self.submit(interaction, order, uploads, command="redo", source=(job_id, None))

    @reports_errors
    async def retry(self, interaction: discord.Interaction[Any], job_id: int) -> None:
        """Run an interrupted job again for its requester: once, however often it is clicked.

        The notice with the button may be a channel message, where anyone could click it; the
        new job is the requester's (their quota, their name on the result), so only they may.
        A click while an earlier retry is waiting, running or done is refused: two clicks
        would pay twice for the same images. A retry that failed may be retried again.
        """
        job = await store.get_job(self.sessions, job_id)
        if job is None or job.status is not JobStatus.INTERRUPTED:
            raise ResultGone()
        check_same_place(interaction, job)
        if interaction.user.id != job.user_id:
            raise NotRequester()
        if job_id in self._retrying:
            raise ResultGone()  # the other click is being handled
        self._retrying.add(job_id)
        try:
            if await store.has_live_retry(self.sessions, job_id):
                raise ResultGone()
            order = await self._kept_order(job)
            await self.submit(interaction, order, command="retry", source=(job_id, None))
        finally:
            self._retrying.discard(job_id)

    @reports_errors
    async def cancel_job(self, interaction: discord.Interaction[Any], job_id: int) -> None:
        """The Cancel button under a waiting request (only its requester sees it)."""
        job = await store.get_job(self.sessions, job_id)
        if job is None:
            raise ResultGone()
        check_same_place(interaction, job)
        if interaction.user.id != job.user_id:
            raise NotRequester()
        # Through the status board: a queue update being written now cannot land after
        # "Cancelled" and bring the Cancel button back.
        if not await self.bot.delivery.status.cancel(job_id, lambda: self.runner.cancel(job_id)):
            raise CannotCancel()
        text = self.catalog.text("status.cancelled", interaction.locale)
        await interaction.response.edit_message(content=text, view=None)

    @reports_errors
    async def open_remix(self, interaction: discord.Interaction[Any], job_id: int) -> None:
        job = await self._result_job(interaction, job_id)
        if job.operation == Operation.VARY.value:
            raise NothingToRemix()  # a button from before variations lost theirs
        if job.pruned_at is not None and job.operation != Operation.GENERATE.value:
            # Said now, not after the member wrote a new prompt: the upload is gone.
            raise ResultTooOld(days=self.bot.settings.storage.retention_days)
        modal = RemixModal(self.catalog, job_id, job.prompt, interaction.locale)
        # Not kept in memory: the submission is routed by its custom_id (views.route_modal),
        # so it is answered after a restart, or however long the member took to write.
        modal.stop()
        await interaction.response.send_modal(modal)

    @reports_errors
    async def remix(self, interaction: discord.Interaction[Any], job_id: int, prompt: str) -> None:
        job = await self._result_job(interaction, job_id)
        order = await self._kept_order(job)
        await self.submit(
            interaction,
            dataclasses.replace(order, prompt=prompt),
            command="remix",
            source=(job_id, None),
        )

    @reports_errors
    async def delete_result(self, interaction: discord.Interaction[Any], job_id: int) -> None:
        job = await self._result_job(interaction, job_id)
        allowed = interaction.user.id == job.user_id or (interaction.permissions.manage_messages)
        if not allowed:
            raise NotRequester()
        await interaction.response.defer(ephemeral=True, thinking=True)
        messages = await store.messages_of(self.sessions, job)
        if interaction.message is not None and interaction.message.id not in {
            message_id for _, message_id in messages
        }:
            messages.insert(0, (interaction.message.channel.id, interaction.message.id))
        for channel_id, message_id in messages:  # every part of a split result
            channel = self.bot.get_partial_messageable(channel_id or 0)
            # Someone deleted it a moment earlier: deleted all the same.
            with contextlib.suppress(discord.NotFound):
                await channel.get_partial_message(message_id).delete()
        await store.forget_result(self.sessions, job_id)
        await interaction.followup.send(
            self.catalog.text("result.deleted", interaction.locale), ephemeral=True
        )


#: What the bot needs in a channel to post a result there without an interaction.
POST_PERMISSIONS = ("send_messages", "embed_links", "attach_files", "read_message_history")


def check_can_post(guild: discord.Guild | None, channel_id: int) -> None:
    """Raise BotMissingPermissions when the bot may not post a result in the channel."""
    channel = guild.get_channel_or_thread(channel_id) if guild else None
    if guild is None or channel is None:
        return  # not cached: the post itself will tell
    perms = channel.permissions_for(guild.me)
    needed = list(POST_PERMISSIONS)
    if isinstance(channel, discord.Thread):
        needed[0] = "send_messages_in_threads"
    missing = [name for name in needed if not getattr(perms, name)]
    if missing:
        names = ", ".join(name.replace("_", " ").title() for name in missing)
        raise BotMissingPermissions(permissions=names)


def uploads_gone(order: ImageOrder) -> bool:
    """Whether the stored order lacks the image it needs (pruned after the retention)."""
    return order.operation is not Operation.GENERATE and order.image is None


def result_attachment(message: discord.Message, index: int) -> discord.Attachment:
    """Image ``index`` (0-based) of a result, found by the name results give their files."""
    prefix = f"image_{index + 1}."
    for attachment in message.attachments:
        if attachment.filename.startswith(prefix):
            return attachment
    raise ResultGone()


class RemixModal(discord.ui.Modal):
    """A new prompt for a result's settings; prefilled with the old one.

    Only rendered here: its custom_id carries the job and the submission is handled by
    :func:`bot.discord.generate._views.route_modal`, which calls :meth:`Actions.remix`."""

    def __init__(self, catalog: Catalog, job_id: int, prompt: str, locale: discord.Locale) -> None:
        super().__init__(
            title=catalog.text("modal.remix.title", locale),
            custom_id=remix_modal_id(job_id),
            timeout=None,
        )
        self.prompt: discord.ui.TextInput[RemixModal] = discord.ui.TextInput(
            label=catalog.text("modal.remix.label", locale),
            style=discord.TextStyle.paragraph,
            custom_id=REMIX_PROMPT,
            default=prompt[:4000] or None,
            placeholder=catalog.text("modal.remix.placeholder", locale)[:100],
            max_length=4000,
            required=True,
        )
        self.add_item(self.prompt)
