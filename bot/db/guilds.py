"""A server's settings row: its write lock and the format of its channel lists.

Every change of a server's rules (limits, allowed channels, backend, NSFW and spoiler rules,
negative prompt) takes the row's lock first, so a request is admitted entirely under the old
rules or the new ones. Here in the storage layer because several writers need it, each the only
writer of its own columns: :mod:`bot.quotas` (limits, channels, backend) and
:mod:`bot.moderation` (content rules).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import bindparam, insert, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from bot.db.models import GuildSettings


async def lock_guild(session: AsyncSession, guild_id: int) -> GuildSettings:
    """Take the guild's write lock (creating its row on first use) and return the row."""
    return await session.run_sync(lock_guild_sync, guild_id)


def lock_guild_sync(session: Session, guild_id: int) -> GuildSettings:
    """:func:`lock_guild` in a synchronous session (the hot path's, bot.db.engine.Transactions).

    The update returns the row it locked: one statement on every admission instead of two."""
    for _ in range(2):
        locked = session.execute(_LOCK, {"locked_id": guild_id})
        found = locked.scalar_one_or_none()
        if found is not None:
            return found
        try:
            with session.begin_nested():
                session.execute(insert(GuildSettings).values(guild_id=guild_id, lock_version=1))
            break
        except IntegrityError:
            continue  # created by a concurrent request: lock it with the update
    row = session.get(GuildSettings, guild_id, populate_existing=True)
    assert row is not None
    return row


def lock_guild_to_read_sync(session: Session, guild_id: int) -> GuildSettings:
    """:func:`lock_guild_sync` for a caller that only reads the settings (the admission): a
    Core statement, the row as a copy attached to no session (to change the settings, lock
    with :func:`lock_guild`). A quarter of the ORM's cost, on every request."""
    connection = session.connection()
    for _ in range(2):
        found = connection.execute(_LOCK_TO_READ, {"locked_id": guild_id}).mappings().first()
        if found is not None:
            return GuildSettings(**found)
        try:
            with session.begin_nested():
                session.execute(insert(GuildSettings).values(guild_id=guild_id, lock_version=1))
        except IntegrityError:
            continue  # created by a concurrent request: lock it with the update
    return lock_guild_sync(session, guild_id)


#: Built once: constructing a statement costs more than running it.
_LOCK = (
    update(GuildSettings)
    .where(GuildSettings.guild_id == bindparam("locked_id"))
    .values(lock_version=GuildSettings.lock_version + 1)
    .returning(GuildSettings)
    .execution_options(populate_existing=True)
)
_SETTINGS = GuildSettings.metadata.tables[GuildSettings.__tablename__]
_LOCK_TO_READ = (
    update(_SETTINGS)
    .where(_SETTINGS.c.guild_id == bindparam("locked_id"))
    .values(lock_version=_SETTINGS.c.lock_version + 1)
    .returning(*_SETTINGS.c)
)


def parse_channels(text: str | None) -> frozenset[int]:
    """A stored channel list (space-separated ids, e.g. ``allowed_channels``) as ids."""
    return frozenset(int(part) for part in (text or "").split() if part.isdigit())


def format_channels(channels: Iterable[int]) -> str | None:
    """Channel ids as stored: sorted, space-separated; None for none."""
    text = " ".join(str(c) for c in sorted(channels))
    return text or None
