"""Acknowledged requests a killed process left unfinished, finished at the next start.

:meth:`Actions.submit <bot.discord.generate.Actions.submit>` stores an intake (bot.jobs.intake)
before it defers; the job runner hands each one still there at start to :class:`IntakeResumer`,
which does what the killed process did not get to: read the uploads again from Discord's CDN,
check the order and the quotas as usual and queue it, or, when it cannot be queued, tell the
member why through the interaction (while its token lives) or in the channel.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import discord

from bot.db import Sessions
from bot.db.models import Intake
from bot.discord.errors import ResultGone, ResultTooOld
from bot.discord.generate._delivery import Delivery
from bot.discord.generate._status import ORIGINAL
from bot.discord.generate._uploads import UploadReader
from bot.discord.i18n import Catalog
from bot.discord.tree import member_error
from bot.generation import ImageOrder, check_order
from bot.jobs import JobOrigin, JobRunner, store
from bot.jobs.intake import (
    IntakeOrigin,
    IntakeRequest,
    IntakeUpload,
    order_options,
)
from bot.moderation.blocklist import Blocklist
from bot.providers.registry import BackendSet

log = logging.getLogger(__name__)


def age_restricted(channel: object) -> bool:
    """Whether ``channel`` is age-restricted: its ``nsfw`` flag; a thread has its parent's
    (discord.py's ``is_nsfw``); unknown channels and direct messages are not."""
    is_nsfw = getattr(channel, "is_nsfw", None)
    return bool(is_nsfw()) if callable(is_nsfw) else False


def intake_origin(interaction: discord.Interaction[Any]) -> IntakeOrigin:
    return IntakeOrigin(
        interaction_id=interaction.id,
        application_id=interaction.application_id,
        interaction_token=interaction.token,
        interaction_at=interaction.created_at,
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id,
        parent_channel_id=getattr(interaction.channel, "parent_id", None),
        user_id=interaction.user.id,
        locale=interaction.locale.value,
    )


def intake_request(
    interaction: discord.Interaction[Any],
    order: ImageOrder,
    uploads: list[tuple[discord.Attachment, str]],
    source: tuple[int, int | None] | None,
    *,
    private: bool = False,
) -> IntakeRequest:
    """Everything needed to submit the request again without the interaction object."""
    inputs_from = source[0] if source and not uploads and order.image is not None else None
    return IntakeRequest(
        order=order_options(order),
        uploads=[
            IntakeUpload(subject, attachment.url, attachment.size, attachment.filename)
            for attachment, subject in uploads
        ],
        role_ids=[role.id for role in getattr(interaction.user, "roles", ())],
        source_job_id=source[0] if source else None,
        source_index=source[1] if source else None,
        inputs_from_job=inputs_from,
        attachment_size_limit=interaction.filesize_limit,
        age_restricted=age_restricted(interaction.channel),
        private=private,
    )


@dataclass(eq=False)
class IntakeResumer:
    """The job runner's :class:`bot.jobs.intake.IntakeRecovery`: finishes a left-over intake."""

    catalog: Catalog
    sessions: Sessions
    runner: JobRunner
    backends: BackendSet
    uploads: UploadReader
    #: Answers by the stored token while it lives, else a note in the channel.
    delivery: Delivery
    #: How long uploads are kept: a source pruned while the bot was down is "too old".
    retention_days: int
    #: Checked again: a term may have been blocked while the bot was down.
    blocklist: Blocklist

    async def intake_pending(self, intake: Intake) -> None:
        private = False
        try:
            request = IntakeRequest.from_json(intake.request)
            private = request.private
            await self.blocklist.check(
                guild_id=intake.guild_id,
                user_id=intake.user_id,
                command=intake.command,
                prompt=request.image_order().prompt,
            )
            order = await self._order(request, intake.guild_id)
            await self.runner.submit(
                order,
                _job_origin(intake, request),
                command=intake.command,
                intake_id=intake.id,
            )
            log.info("acknowledged request %d queued after the restart", intake.interaction_id)
        except Exception as exc:
            error = member_error(exc, "left-over request failed")
            text = self.catalog.error_text(error, intake.locale)
            await self._answer(intake, text, private=private)
            await self.runner.intakes.drop(intake.id)

    async def _order(self, request: IntakeRequest, guild_id: int | None) -> ImageOrder:
        order = await self.runner.backends.resolve(request.image_order(), guild_id)
        check_order(self.backends, order)
        if request.inputs_from_job is not None:
            job = await store.get_job(self.sessions, request.inputs_from_job)
            if job is None:
                raise ResultGone()
            stored = await store.order_of(self.sessions, job)
            if stored.image is None:  # pruned while the bot was down: nothing left to send
                raise ResultTooOld(days=self.retention_days)
            order = dataclasses.replace(
                order, image=stored.image, mask=stored.mask, extra_images=stored.extra_images
            )
        uploads = [(u.url, u.size, u.subject) for u in request.uploads]
        return await self.uploads.read_order(order, uploads)

    async def _answer(self, intake: Intake, text: str, *, private: bool = False) -> None:
        """The clear message in place of "thinking…", else in the channel (by DM for a
        private request: the channel must not hear of it)."""
        webhook = self.delivery.status.follow_ups.of(intake)
        if webhook is not None:
            try:
                await webhook.edit_message(ORIGINAL, content=text)
                return
            except discord.HTTPException as exc:
                log.info("left-over request not answered privately (%s)", exc.code)
        await self.delivery.tell(intake.user_id, intake.channel_id, text, private=private)


def _job_origin(intake: Intake, request: IntakeRequest) -> JobOrigin:
    return JobOrigin(
        user_id=intake.user_id,
        guild_id=intake.guild_id,
        channel_id=intake.channel_id,
        locale=intake.locale,
        application_id=intake.application_id,
        interaction_token=intake.interaction_token,
        interaction_at=intake.interaction_at,
        attachment_size_limit=request.attachment_size_limit,
        source_job_id=request.source_job_id,
        source_index=request.source_index,
        parent_channel_id=intake.parent_channel_id,
        role_ids=tuple(request.role_ids),
        age_restricted=request.age_restricted,
        private=request.private,
    )
