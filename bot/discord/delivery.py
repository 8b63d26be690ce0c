"""Posting finished jobs, by whatever route still works.

The interaction's follow-up webhook is tried first (it needs no channel permissions). Its token
lives 15 minutes, and Discord may refuse it for other reasons (unknown webhook 10015, invalid
token 50027), so a result then goes to the channel as a normal message that pings only the
requester, and if the bot may not post there, to the requester by DM. A result is never dropped:
it stays in the database until one route succeeds.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import discord

from bot.db.models import Job
from bot.discord.errors import ResultGone
from bot.discord.results import (
    DEFAULT_UPLOAD_LIMIT,
    ResultPart,
    build_result,
    prepare_uploads,
    requester_only,
)
from bot.errors import BotError
from bot.jobs import store
from bot.providers import ImageResult

if TYPE_CHECKING:
    from bot.discord.bot import ImageBot

log = logging.getLogger(__name__)

#: Follow-ups are not attempted this close to the token's 15-minute end.
TOKEN_LIFETIME = timedelta(minutes=14, seconds=30)
#: The interaction's own response message: Discord takes "@original" where a message id goes.
ORIGINAL: Any = "@original"


class Delivery:
    """The job runner's listener: turns finished jobs into Discord messages."""

    def __init__(self, bot: ImageBot) -> None:
        self.bot = bot

    async def job_succeeded(self, job: Job, result: ImageResult, seconds: float) -> None:
        limit = job.attachment_size_limit or DEFAULT_UPLOAD_LIMIT
        uploads = await self.bot.engine.images.run(prepare_uploads, list(result.images), limit)
        revised = result.revised_prompts[0] if result.revised_prompts else None
        parts = build_result(
            job,
            uploads,
            seconds=seconds,
            revised_prompt=revised,
            catalog=self.bot.catalog,
            limit=limit,
        )
        first = await self._post_parts(job, parts)
        if first is None:
            log.error("job %d: result could not be delivered by any route; kept", job.id)
            return
        await store.record_delivery(self.bot.storage.sessions, job.id, first.channel.id, first.id)
        await self._set_status(job, "status.done")
        log.info("job %d delivered as message %d", job.id, first.id)

    async def job_failed(self, job: Job, error: BotError) -> None:
        text = self.bot.catalog.error_text(error, job.locale)
        if await self._set_status(job, text=text):
            return
        await self._send_public(job, text)

    # --- routes --------------------------------------------------------------------------------

    def _webhook(self, job: Job) -> discord.Webhook | None:
        """The job's interaction follow-up webhook while its token is still alive."""
        if not (job.application_id and job.interaction_token and job.interaction_at):
            return None
        created = job.interaction_at
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        if datetime.now(UTC) - created > TOKEN_LIFETIME:
            return None
        return discord.Webhook.from_state(
            data={"id": job.application_id, "type": 3, "token": job.interaction_token},
            state=self.bot._connection,
        )

    async def _post_parts(self, job: Job, parts: list[ResultPart]) -> discord.Message | None:
        webhook = self._webhook(job)
        first: discord.Message | None = None
        explained = False
        for part in parts:
            message = None
            if webhook is not None:
                message = await self._via_webhook(webhook, job, part)
                if message is None:
                    webhook = None  # refused once: the channel for the rest
            if message is None:
                message = await self._via_channel(job, part)
            if message is None:
                message = await self._via_dm(job, part, explain=not explained)
                explained = explained or message is not None
            if message is None:
                return first
            first = first or message
        return first

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
                wait=True,
            )
        except discord.HTTPException as exc:
            log.warning(
                "job %d: follow-up refused (%s %s); posting to the channel",
                job.id,
                exc.status,
                exc.code,
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
            content = self.bot.catalog.text(
                "result.sent_by_dm", job.locale, channel_id=job.channel_id
            )
        try:
            user = self.bot.get_user(job.user_id) or await self.bot.fetch_user(job.user_id)
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
        channel: Any = self.bot.get_channel(channel_id)
        if channel is None:
            try:
                channel = await self.bot.fetch_channel(channel_id)
            except discord.HTTPException:
                return None
        return channel if isinstance(channel, discord.abc.Messageable) else None

    async def _set_status(self, job: Job, key: str = "", *, text: str = "") -> bool:
        """Edit the private status message; False when the interaction can no longer be used."""
        webhook = self._webhook(job)
        if webhook is None:
            return False
        try:
            await webhook.edit_message(
                ORIGINAL, content=text or self.bot.catalog.text(key, job.locale)
            )
        except discord.HTTPException as exc:
            log.info("job %d: status not updated (%s %s)", job.id, exc.status, exc.code)
            return False
        return True

    async def _send_public(self, job: Job, text: str) -> None:
        if job.user_id:
            await self.tell(job.user_id, job.channel_id, text)

    async def tell(self, user_id: int, channel_id: int | None, text: str) -> None:
        """A short note for a member without an interaction: in the channel, else by DM."""
        channel = await self._channel(channel_id)
        try:
            if channel is not None:
                await channel.send(f"<@{user_id}> {text}", allowed_mentions=requester_only(user_id))
                return
        except discord.HTTPException as exc:
            log.warning("could not tell member %d in channel %s: %s", user_id, channel_id, exc)
        try:
            user = self.bot.get_user(user_id) or await self.bot.fetch_user(user_id)
            # In a DM "here" needs saying where: the channel the member acted in.
            await user.send(f"<#{channel_id}> {text}" if channel_id else text)
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


def _rewind(part: ResultPart) -> None:
    """Files are streams: a failed attempt leaves them read, so the next route must rewind."""
    for file in part.files:
        file.reset()
