"""Values that belong to one installation (one database) and must outlive every restart.

The salt of the hashed ``user`` sent to the provider lives here: random per installation, so two
bots sharing an API key (or a leaked key) cannot link a member across installations, and stable
across restarts, so the provider's abuse tracking sees one member as one ``user``.
"""

from __future__ import annotations

import secrets

from sqlalchemy.exc import IntegrityError

from bot.db.engine import Sessions
from bot.db.models import Installation

USER_SALT_KEY = "user_salt"


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
