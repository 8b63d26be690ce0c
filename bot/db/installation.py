"""Values that belong to one installation (one database) and must outlive every restart.

The salt of the hashed ``user`` sent to the provider lives here: random per installation, so two
bots sharing an API key (or a leaked key) cannot link a member across installations, and stable
across restarts, so the provider's abuse tracking sees one member as one ``user``.

So does what the slash commands were last synced as: every process of a scaled-out bot starts
with the same commands, and Discord limits how often they may be registered, so only the one
process that finds them changed syncs them (:func:`changing_value`).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bot.db.engine import Sessions
from bot.db.models import Installation

USER_SALT_KEY = "user_salt"
#: What the application commands were last synced as (target and a hash of the payload).
COMMAND_SYNC_KEY = "command_sync"


async def installation_value(sessions: Sessions, key: str, new: str) -> str:
    """The stored value of ``key``, storing ``new`` first if there is none yet.

    Two processes starting on one database at once both try to insert; the loser reads the
    winner's value, so every process of an installation ends up with the same one.
    """
    async with sessions() as session:
        row = await session.get(Installation, key)
        if row is not None:
            return row.value
        session.add(Installation(key=key, value=new))
        try:
            await session.commit()
        except IntegrityError:
            await session.rollback()
        else:
            return new
    async with sessions() as session:
        row = await session.get(Installation, key)
        assert row is not None  # the other process committed it
        return row.value


async def user_salt(sessions: Sessions) -> str:
    """This installation's salt, created at its first start."""
    return await installation_value(sessions, USER_SALT_KEY, secrets.token_hex(32))


@asynccontextmanager
async def changing_value(sessions: Sessions, key: str, new: str) -> AsyncIterator[bool]:
    """Whether ``key`` still has to become ``new``; True for one process only.

    That process runs its block while it holds the row's lock, and the new value is stored when
    the block ends without an error (an error leaves the old value for the next attempt). On
    PostgreSQL a second process waits on the lock, then reads the new value: False. SQLite has
    no row locks (FOR UPDATE is left out), and one process, so nobody is there to wait.
    """
    await installation_value(sessions, key, "")  # the row exists, so it can be locked
    async with sessions() as session, session.begin():
        row = await session.scalar(
            select(Installation).where(Installation.key == key).with_for_update()
        )
        assert row is not None
        if row.value == new:
            yield False
            return
        yield True
        row.value = new
