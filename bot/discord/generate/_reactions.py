"""Reacting to a result varies it: 🔄 (configurable) varies image 1, 1️⃣-🔟 vary that image.

The member who reacted is the requester. Reactions by bots, on messages the bot did not post as
results, or with other emoji are ignored; the job is found by the message id stored when the
result was delivered, so this keeps working after a restart.

A reaction costs its member nothing to add and remove, so it is checked like every other way
in, cheapest first (server, rate, permissions, rules, queue caps, quotas read-only), before the
bot fetches the message or downloads an image; and a refusal is said in public at most once
per member every few minutes, in a note that deletes itself.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import discord

from bot.db.models import Job
from bot.discord.errors import NoSuchImage
from bot.discord.generate._buttons import check_can_post, result_attachment, vary_order
from bot.discord.generate._delivery import Delivery
from bot.discord.generate._intakes import age_restricted
from bot.discord.generate._submit import Actions
from bot.discord.generate._uploads import precheck
from bot.discord.i18n import Catalog
from bot.discord.tree import member_error
from bot.generation import check_order
from bot.jobs import JobOrigin, store

log = logging.getLogger(__name__)

KEYCAPS = ("1️⃣", "2️⃣", "3️⃣", "4️⃣", "5️⃣", "6️⃣", "7️⃣", "8️⃣", "9️⃣", "🔟")
#: A member hears about a refused reaction in public at most once in this many seconds...
NOTICE_INTERVAL_SECONDS = 300.0
#: ... and the note deletes itself after this many.
NOTICE_LIFETIME_SECONDS = 30.0


def image_index(emoji: str, vary_emoji: str) -> int | None:
    """Which image (0-based) a reaction asks to vary, or None for any other emoji."""
    if emoji == vary_emoji:
        return 0
    if emoji in KEYCAPS:
        return KEYCAPS.index(emoji)
    return None


class RefusalNotices:
    """Who was told about a refused reaction recently: one public note per member per interval."""

    def __init__(
        self,
        interval: float = NOTICE_INTERVAL_SECONDS,
        lifetime: float = NOTICE_LIFETIME_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        #: Seconds a note stays before it deletes itself.
        self.lifetime = lifetime
        self._clock = clock
        self._last: dict[int, float] = {}

    def claim(self, user_id: int) -> bool:
        """True (and remembered) when ``user_id`` may be told now."""
        now = self._clock()
        self._last = {u: t for u, t in self._last.items() if now - t < self.interval}
        if user_id in self._last:
            return False
        self._last[user_id] = now
        return True


@dataclass(eq=False)
class Reactions:
    """The ``on_raw_reaction_add`` listener."""

    #: The Discord connection: who the bot is, the guild (locale, channel permissions).
    client: discord.Client
    catalog: Catalog
    actions: Actions
    delivery: Delivery
    vary_emoji: str
    notices: RefusalNotices = field(default_factory=RefusalNotices, init=False)

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        user = self.client.user
        if payload.guild_id is None or (user and payload.user_id == user.id):
            return
        if payload.member is not None and payload.member.bot:
            return
        index = image_index(str(payload.emoji), self.vary_emoji)
        if index is None:
            return
        job = await store.job_for_message(self.actions.sessions, payload.message_id)
        if job is None or job.guild_id != payload.guild_id:
            return
        log.info("reaction %s on job %d by %d", payload.emoji, job.id, payload.user_id)
        await self.vary(payload, job, index)

    async def vary(self, payload: discord.RawReactionActionEvent, job: Job, index: int) -> None:
        """Like the Vary button, without an interaction: answers go to the channel (or DM)."""
        actions, runner = self.actions, self.actions.runner
        guild = self.client.get_guild(payload.guild_id or 0)
        locale = guild.preferred_locale.value if guild else None
        try:
            origin = reaction_origin(payload, guild, job, locale, index)
            if origin is None:
                log.warning("reaction by %d: member unknown, ignored", payload.user_id)
                return
            actions.requests.take(payload.user_id)
            if index >= job.n_delivered:
                raise NoSuchImage(index=index + 1)
            # Private like a button's: the member's default, or the result's own (one read).
            defaults = await actions.defaults.of(payload.user_id)
            origin = dataclasses.replace(origin, private=defaults.private or job.private)
            if not origin.private:
                # No interaction means no follow-up webhook: the result can only go to the
                # channel. Refuse before anything is made (and paid for) that could not be
                # posted there. (A private one goes by DM, which cannot be checked first.)
                check_can_post(guild, payload.channel_id)
            order = dataclasses.replace(
                vary_order(actions.backends, job), user_id=str(payload.user_id)
            )
            order = await runner.backends.resolve(order, payload.guild_id)
            check_order(actions.backends, order)
            runner.precheck(order, origin)
            # A variation on a backend that redraws from the prompt sends the kept prompt.
            await actions.blocklist.check(
                guild_id=origin.guild_id,
                user_id=origin.user_id,
                command="reaction",
                prompt=order.prompt,
            )
            await runner.would_fit(order, origin)
            # Only now what costs: the message, the download, the probe.
            message = await self.delivery.fetch_message(payload.channel_id, payload.message_id)
            attachment = result_attachment(message, index)
            precheck(attachment, actions.upload_limit)
            order = await actions.uploads.read_order(
                order, [(attachment.url, attachment.size, "image")]
            )
            await runner.submit(order, origin, command="reaction")
        except Exception as exc:
            await self._refused(payload, job, exc, locale)

    async def _refused(
        self,
        payload: discord.RawReactionActionEvent,
        job: Job,
        exc: Exception,
        locale: str | None,
    ) -> None:
        error = member_error(exc, f"reaction on job {job.id} failed")
        if not self.notices.claim(payload.user_id):
            log.info("reaction by %d refused (%s); told recently", payload.user_id, error.key)
            return
        text = self.catalog.error_text(error, locale)
        await self.delivery.tell(
            payload.user_id, payload.channel_id, text, delete_after=self.notices.lifetime
        )


def reaction_origin(
    payload: discord.RawReactionActionEvent,
    guild: discord.Guild | None,
    job: Job,
    locale: str | None,
    index: int,
) -> JobOrigin | None:
    """Where and by whom, as complete as an interaction's; None when the member is unknown.

    The roles come with the event (``payload.member``); the parent channel of a thread from
    the guild cache, else from the job when the result is in the channel it was asked in.
    """
    member = payload.member or (guild.get_member(payload.user_id) if guild else None)
    if member is None:
        return None
    channel = guild.get_channel_or_thread(payload.channel_id) if guild else None
    parent = getattr(channel, "parent_id", None)
    if channel is None and payload.channel_id == job.channel_id:
        parent = job.parent_channel_id
    return JobOrigin(
        user_id=payload.user_id,
        guild_id=payload.guild_id,
        channel_id=payload.channel_id,
        parent_channel_id=parent,
        role_ids=tuple(role.id for role in member.roles),
        locale=locale,
        source_job_id=job.id,
        source_index=index,
        age_restricted=age_restricted(channel),
    )
