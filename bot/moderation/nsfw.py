"""A server's NSFW rules: low moderation in age-restricted channels, spoiler results, and the
negative prompt every Stable Diffusion request there gets.

The only writer of ``guild_settings.nsfw_low_moderation``, ``spoiler_results``,
``spoiler_channels`` and ``sd_negative_prompt`` (``/moderation nsfw …``), each change under
the guild's lock like every other change of a server's rules. :class:`ContentRules` reads them
for the job runner (which applies them to an order at admission, :func:`apply_rules`, so the
job row records what was sent) and for the delivery (spoilers), kept a few seconds so a burst
of requests costs one read per server.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession

from bot.db import Sessions
from bot.db.guilds import format_channels, lock_guild, parse_channels
from bot.db.kept import Kept
from bot.db.models import GuildSettings
from bot.generation import ImageOrder
from bot.providers import Operation

#: The moderation level sent in an age-restricted channel of a server that allows it.
LOW_MODERATION = "low"
#: Longest server negative prompt (it is added to every member's own).
NEGATIVE_PROMPT_LIMIT = 1000
#: Seconds a server's rules are kept before they are read again.
RULES_SECONDS = 5.0


@dataclass(frozen=True)
class NsfwRules:
    """A server's NSFW rules as stored (the defaults: none of them)."""

    low_moderation: bool = False
    spoiler_results: bool = False
    spoiler_channels: frozenset[int] = frozenset()
    sd_negative_prompt: str = ""

    @classmethod
    def of(cls, row: GuildSettings | None) -> NsfwRules:
        if row is None:
            return cls()
        return cls(
            low_moderation=bool(row.nsfw_low_moderation),
            spoiler_results=bool(row.spoiler_results),
            spoiler_channels=parse_channels(row.spoiler_channels),
            sd_negative_prompt=row.sd_negative_prompt or "",
        )

    def spoilers_in(self, channel_id: int | None, parent_channel_id: int | None) -> bool:
        """Whether a result posted in ``channel_id`` (a thread: also its parent's) is a
        spoiler."""
        if self.spoiler_results:
            return True
        return bool({channel_id, parent_channel_id} & self.spoiler_channels)


def apply_rules(
    order: ImageOrder,
    rules: NsfwRules,
    *,
    age_restricted: bool,
    takes_moderation: bool,
    sd_backend: bool,
) -> ImageOrder:
    """``order`` as the server's rules send it, decided at admission.

    ``moderation`` is "low" only for a generation on a model that takes it
    (``ModelSpec.moderation``) in an age-restricted channel of a server that allows it, and
    otherwise not sent, whatever the order carried (a Redo in another channel decides anew).
    On a Stable Diffusion backend (``sd_backend``) the server's negative prompt is added to
    the member's own, once (a Redo of a job that had it does not get it twice)."""
    low = (
        rules.low_moderation
        and age_restricted
        and takes_moderation
        and order.operation is Operation.GENERATE
    )
    negative = order.negative_prompt
    if sd_backend:
        negative = with_server_negative(negative, rules.sd_negative_prompt)
    return dataclasses.replace(
        order, moderation=LOW_MODERATION if low else None, negative_prompt=negative
    )


def with_server_negative(own: str, server: str) -> str:
    """The member's negative prompt followed by the server's (unless it has it already)."""
    server = server.strip()
    if not server or server in own:
        return own
    return f"{own.strip()}, {server}" if own.strip() else server


class ContentRules:
    """Each server's :class:`NsfwRules`, read when needed and kept :data:`RULES_SECONDS`."""

    def __init__(self, sessions: Sessions, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._sessions = sessions
        self._kept: Kept[int, NsfwRules] = Kept(RULES_SECONDS, clock=clock)

    async def of(self, guild_id: int | None) -> NsfwRules:
        """The server's rules (direct messages: none)."""
        if guild_id is None:
            return NsfwRules()
        return await self._kept.get(guild_id, partial(rules_of, self._sessions, guild_id))

    def last_known(self, guild_id: int | None) -> NsfwRules:
        """The rules as last read, however old (the database cannot be read just now)."""
        kept = self._kept.last(guild_id) if guild_id is not None else None
        return kept if kept is not None else NsfwRules()

    def forget(self, guild_id: int) -> None:
        """The server's rules changed (its admin command): read them again next time."""
        self._kept.forget(guild_id)


async def rules_of(sessions: Sessions, guild_id: int) -> NsfwRules:
    async with sessions() as session:
        return NsfwRules.of(await session.get(GuildSettings, guild_id))


async def set_low_moderation(sessions: Sessions, guild_id: int, allowed: bool) -> NsfwRules:
    """Allow (or stop) ``moderation="low"`` for GPT image models in age-restricted channels."""
    async with sessions() as session, session.begin():
        row = await lock_guild(session, guild_id)
        row.nsfw_low_moderation = allowed
        return await _rules(session, row)


async def set_spoilers(
    sessions: Sessions, guild_id: int, on: bool, channel_id: int | None = None
) -> NsfwRules:
    """Results as spoilers in the whole server (``channel_id`` None) or in one channel."""
    async with sessions() as session, session.begin():
        row = await lock_guild(session, guild_id)
        if channel_id is None:
            row.spoiler_results = on
        else:
            channels = set(parse_channels(row.spoiler_channels))
            if on:
                channels.add(channel_id)
            else:
                channels.discard(channel_id)
            row.spoiler_channels = format_channels(channels)
        return await _rules(session, row)


async def set_negative_prompt(sessions: Sessions, guild_id: int, text: str | None) -> NsfwRules:
    """The server's Stable Diffusion negative prompt; None or blank clears it."""
    cleaned = (text or "").strip()[:NEGATIVE_PROMPT_LIMIT]
    async with sessions() as session, session.begin():
        row = await lock_guild(session, guild_id)
        row.sd_negative_prompt = cleaned or None
        return await _rules(session, row)


async def _rules(session: AsyncSession, row: GuildSettings) -> NsfwRules:
    await session.flush()
    return NsfwRules.of(row)
