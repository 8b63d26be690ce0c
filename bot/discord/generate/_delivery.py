"""Posting finished jobs, by whatever route still works.

The interaction's follow-up webhook is tried first (it needs no channel permissions). Its token
lives 15 minutes, and Discord may refuse it for other reasons (unknown webhook 10015, invalid
token 50027), so a result then goes to the channel as a normal message that pings only the
requester, and if the bot may not post there, to the requester by DM. A result is never dropped:
it stays in the database until one route succeeds. When none does (Discord down, the channel
closed and DMs off), it is tried again a few times with growing pauses, and at every start.

A private job (``Job.private``: the member's ``/settings``, or the request's ``private``
option) never reaches the channel: its result is an ephemeral follow-up while the token lives,
else a DM, else kept and retried like any other; its failure and interruption notices take the
same two routes. Only moderators' audit entries (bot.moderation.audit) still see it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import discord

from bot.db import Sessions
from bot.db.models import Job, JobStatus
from bot.discord.errors import ResultGone
from bot.discord.generate._results import (
    DEFAULT_UPLOAD_LIMIT,
    ResultPart,
    as_uploads,
    build_result,
    fits,
    prepare_uploads,
    requester_only,
)
from bot.discord.generate._status import ORIGINAL, StatusBoard
from bot.discord.generate._views import PostButton, RetryButton
from bot.discord.i18n import Catalog
from bot.errors import BotError
from bot.imaging import ImageWorker
from bot.jobs import JobRunner, Place, store
from bot.jobs.spool import DATABASE_ERRORS, Posted
from bot.providers import GeneratedImage
from bot.providers.progress import ProgressUpdate

log = logging.getLogger(__name__)


#: Pauses (seconds) before posting a result again that no route took; then the next start tries.
REDELIVERY_DELAYS = (30.0, 120.0, 600.0, 3600.0)


@dataclass(eq=False)
class Delivery:
    """The job runner's listener: turns finished jobs into Discord messages."""

    #: The Discord connection: channels and users to post to.
    client: discord.Client
    catalog: Catalog
    sessions: Sessions
    images: ImageWorker
    #: Where redeliveries run (its background tasks) and results are kept (its spool).
    runner: JobRunner
    status: StatusBoard
    redelivery_delays: tuple[float, ...] = REDELIVERY_DELAYS
    _redelivering: set[int] = field(default_factory=set, init=False)

    async def job_queued(self, job: Job, place: Place | None) -> None:
        await self.status.queued(job, place)

    def job_progress(self, job: Job, update: ProgressUpdate) -> None:
        self.status.progress(job, update)

    async def job_succeeded(self, job: Job, images: list[GeneratedImage]) -> Posted:
        """Where the result was posted (the runner records it); empty when it is kept."""
        await self.status.stop_progress(job)  # no progress edit lands after the result
        posted = await self._post_result(job, images)
        if posted:
            return posted
        await self._tell_late(job)
        if job.id not in self._redelivering:
            self._redelivering.add(job.id)
            self.runner.spawn(self._redeliver(job.id), name=f"redeliver-{job.id}")
        return []

    async def job_recorded(self, job: Job) -> None:
        """Posted and recorded: "done" replaces the status only now, so every button on the
        result works from the moment the member reads it."""
        await self.status.final(job, self.catalog.text("status.done", job.locale))

    async def _tell_late(self, job: Job) -> None:
        """The images are made and kept, but no route took them: the member hears they follow."""
        webhook = self.status.follow_ups.of(job)
        if webhook is None:
            return
        key = "status.late_private" if job.private else "status.late"
        text = self.catalog.text(key, job.locale)
        try:
            await webhook.edit_message(ORIGINAL, content=text, view=None)
        except discord.HTTPException as exc:
            log.info("job %d: late delivery not told (%s)", job.id, exc.code)

    async def _redeliver(self, job_id: int) -> None:
        """Post a kept result again later: the images were paid for."""
        sessions = self.sessions
        try:
            for delay in self.redelivery_delays:
                await asyncio.sleep(delay)
                job = await store.get_job(sessions, job_id)
                if job is not None and job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
                    continue  # the runner records the result after this attempt: not yet
                if job is None or job.status is not JobStatus.SUCCEEDED:
                    return  # posted meanwhile (say, by a Retry of the same images) or deleted
                try:
                    images = await store.outputs_of(sessions, job_id)
                    posted = await self._post_result(job, images)
                    if posted:
                        await self.runner.delivered(job_id, posted)
                        await self.job_recorded(job)
                        return
                except Exception:
                    log.exception("job %d: posting the kept result failed", job_id)
            log.error("job %d: result still undeliverable; the next start tries again", job_id)
        finally:
            self._redelivering.discard(job_id)

    async def result_parts(
        self, job: Job, images: list[GeneratedImage], limit: int, *, spoiler: bool
    ) -> list[ResultPart]:
        """The messages of ``job``'s result for an upload limit of ``limit`` bytes (images
        over it re-encoded in the image worker): for its first post and for /show's copies."""
        if fits(images, limit):
            uploads = as_uploads(images)
        else:
            uploads = await self.images.run(prepare_uploads, images, limit)
        return build_result(
            job,
            uploads,
            seconds=provider_seconds(job),
            revised_prompt=job.revised_prompt,
            catalog=self.catalog,
            limit=limit,
            seeds=[image.seed for image in images],
            shapes=[(image.width, image.height) for image in images],
            spoiler=spoiler,
        )

    async def _post_result(self, job: Job, images: list[GeneratedImage]) -> Posted:
        """Post the result by the first route that works; where, or empty when none did (it
        is kept). The status says "done" once that is recorded (:meth:`job_recorded`)."""
        limit = job.attachment_size_limit or DEFAULT_UPLOAD_LIMIT
        parts = await self.result_parts(job, images, limit, spoiler=await self._spoiler(job))
        posted = await self._post_parts(job, parts)
        if not posted:
            log.error("job %d: result could not be delivered by any route; kept", job.id)
            return []
        log.info("job %d delivered as message %d", job.id, posted[0].id)
        return [(m.channel.id, m.id) for m in posted]

    async def _spoiler(self, job: Job) -> bool:
        return await self.spoilers_in(job.guild_id, job.channel_id, job.parent_channel_id)

    async def spoilers_in(
        self, guild_id: int | None, channel_id: int | None, parent_channel_id: int | None
    ) -> bool:
        """Whether the server posts results in the channel as spoilers; while its rules
        cannot be read, as last read (a result is never held back for them)."""
        rules = self.runner.content_rules
        try:
            current = await rules.of(guild_id)
        except DATABASE_ERRORS:
            log.warning("guild %s: the server's spoiler rule not read; as last known", guild_id)
            current = rules.last_known(guild_id)
        return current.spoilers_in(channel_id, parent_channel_id)

    async def job_failed(self, job: Job, error: BotError) -> None:
        text = self.catalog.error_text(error, job.locale)
        if not await self.status.final(job, text):
            await self._send_public(job, text)

    async def job_cancelled(self, job: Job) -> None:
        """Cancel was pressed on another process (which answers the click): no progress edit
        of this one lands after it, and the status says so even if that answer came late."""
        await self.status.final(job, self.catalog.text("status.cancelled", job.locale))

    async def job_interrupted(self, job: Job) -> None:
        """The bot stopped while this job ran: nothing charged; offer to run it again."""
        button = RetryButton(job.id, self.catalog.text("button.retry", job.locale))
        dm_text = self.catalog.text("status.interrupted_dm", job.locale)
        await self._notice(
            job, self.catalog.text("status.interrupted", job.locale), button, dm_text
        )

    async def job_post_interrupted(self, job: Job) -> None:
        """The process posting this result stopped midway (the shared queue, bot.jobs.orphans):
        it may be on Discord or not; the requester, who can see which, may post it."""
        text = self.catalog.text("status.post_interrupted", job.locale)
        button = PostButton(job.id, self.catalog.text("button.post", job.locale))
        await self._notice(job, text, button, text)

    async def _notice(
        self, job: Job, text: str, button: discord.ui.Item[Any], dm_text: str
    ) -> None:
        """A notice with one button, in the member's private status message while its token
        lives, else in the channel (pinging only them), else by DM."""
        view = discord.ui.View(timeout=None)
        view.add_item(button)
        webhook = self.status.follow_ups.of(job)
        if webhook is not None:
            try:
                await webhook.edit_message(ORIGINAL, content=text, view=view)
                return
            except discord.HTTPException as exc:
                log.info("job %d: notice not shown privately (%s)", job.id, exc.code)
        if job.user_id:
            await self.tell(
                job.user_id,
                job.channel_id,
                text,
                view=view,
                dm_text=dm_text,
                private=job.private,
            )

    async def post_kept(self, job: Job) -> Posted:
        """Post the result ``job`` keeps (its images in the database) and record where; empty
        when no route took it."""
        images = await store.outputs_of(self.sessions, job.id)
        posted = await self._post_result(job, images)
        if posted:
            await self.runner.delivered(job.id, posted)
            await self.job_recorded(job)
        return posted

    # --- routes --------------------------------------------------------------------------------

    async def _post_parts(self, job: Job, parts: list[ResultPart]) -> list[discord.Message]:
        """Every message posted, in order (empty: none was); Delete removes them all.

        A private job's parts are ephemeral follow-ups, else DMs: never the channel."""
        webhook = self.status.follow_ups.of(job)
        posted: list[discord.Message] = []
        explained = False
        for part in parts:
            message = None
            if webhook is not None:
                message = await self._via_webhook(webhook, job, part)
                if message is None:
                    webhook = None  # refused once: the channel (or DMs) for the rest
            if message is None and not job.private:
                message = await self._via_channel(job, part)
            if message is None:
                message = await self._via_dm(job, part, explain=not explained)
                explained = explained or message is not None
            if message is None:
                return posted
            posted.append(message)
        return posted

    async def _via_webhook(
        self, webhook: discord.Webhook, job: Job, part: ResultPart
    ) -> discord.Message | None:
        try:
            return await webhook.send(
                content=part.content,
                embeds=part.embeds,
                files=part.files,
                view=part.view,
                allowed_mentions=part.allowed_mentions,
                ephemeral=bool(job.private),
                wait=True,
            )
        except discord.HTTPException as exc:
            log.warning(
                "job %d: follow-up refused (%s %s); posting to the %s",
                job.id,
                exc.status,
                exc.code,
                "member by DM" if job.private else "channel",
            )
            _rewind(part)
            return None

    async def _via_channel(self, job: Job, part: ResultPart) -> discord.Message | None:
        channel = await self._channel(job.channel_id)
        if channel is None:
            return None
        try:
            return await channel.send(
                content=part.content,
                embeds=part.embeds,
                files=part.files,
                view=part.view,
                allowed_mentions=part.allowed_mentions,
            )
        except discord.HTTPException as exc:
            log.warning("job %d: channel post refused (%s %s)", job.id, exc.status, exc.code)
            _rewind(part)
            return None

    async def _via_dm(
        self, job: Job, part: ResultPart, *, explain: bool = True
    ) -> discord.Message | None:
        """The requester's DMs; the first message says why the images came here."""
        if not job.user_id:
            return None
        content = part.content
        if explain and job.channel_id:
            key = "result.private_by_dm" if job.private else "result.sent_by_dm"
            content = self.catalog.text(key, job.locale, channel_id=job.channel_id)
        try:
            user = self.client.get_user(job.user_id) or await self.client.fetch_user(job.user_id)
            return await user.send(
                content=content,
                embeds=part.embeds,
                files=part.files,
                view=part.view,
                allowed_mentions=part.allowed_mentions,
            )
        except discord.HTTPException as exc:
            log.warning("job %d: DM refused (%s %s)", job.id, exc.status, exc.code)
            return None

    async def _channel(self, channel_id: int | None) -> discord.abc.Messageable | None:
        if channel_id is None:
            return None
        channel: Any = self.client.get_channel(channel_id)
        if channel is None:
            try:
                channel = await self.client.fetch_channel(channel_id)
            except discord.HTTPException:
                return None
        return channel if isinstance(channel, discord.abc.Messageable) else None

    async def _send_public(self, job: Job, text: str) -> None:
        if job.user_id:
            await self.tell(job.user_id, job.channel_id, text, private=job.private)

    async def tell(
        self,
        user_id: int,
        channel_id: int | None,
        text: str,
        *,
        view: discord.ui.View | None = None,
        delete_after: float | None = None,
        dm_text: str | None = None,
        private: bool = False,
    ) -> None:
        """A short note for a member without an interaction: in the channel, else by DM.

        ``delete_after`` (seconds) makes it short-lived, like the refusals of reactions. A
        ``view`` is shown in the channel only: its buttons act on a server's job, which a click
        in a DM cannot (no server, no roles), so the DM says ``dm_text`` instead. ``private``
        (about a private job): by DM only, the channel must not learn of it."""
        channel = None if private else await self._channel(channel_id)
        extra: dict[str, Any] = {"view": view} if view is not None else {}
        if delete_after is not None:
            extra["delete_after"] = delete_after
        try:
            if channel is not None:
                await channel.send(
                    f"<@{user_id}> {text}", allowed_mentions=requester_only(user_id), **extra
                )
                return
        except discord.HTTPException as exc:
            log.warning("could not tell member %d in channel %s: %s", user_id, channel_id, exc)
        try:
            user = self.client.get_user(user_id) or await self.client.fetch_user(user_id)
            # In a DM "here" needs saying where: the channel the member acted in.
            extra.pop("view", None)
            said = dm_text or text
            await user.send(f"<#{channel_id}> {said}" if channel_id else said, **extra)
        except discord.HTTPException as exc:
            log.warning("could not tell member %d by DM: %s", user_id, exc)

    async def fetch_message(self, channel_id: int, message_id: int) -> discord.Message:
        channel = await self._channel(channel_id)
        if channel is None:
            raise ResultGone()
        try:
            return await channel.fetch_message(message_id)
        except discord.NotFound:
            raise ResultGone() from None


def provider_seconds(job: Job) -> float:
    """How long the provider took, from the job's own timestamps (also after a restart)."""
    if job.started_at is None or job.finished_at is None:
        return 0.0
    return max((job.finished_at - job.started_at).total_seconds(), 0.0)


def _rewind(part: ResultPart) -> None:
    """Files are streams: a failed attempt leaves them read, so the next route must rewind."""
    for file in part.files:
        file.reset()
