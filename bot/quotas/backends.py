"""A server's choice of image backend: the one writer of ``guild_settings.backend``.

The operator configures the backends and enables each for some servers only
(``enabled_guilds``; see :meth:`bot.providers.registry.BackendSet.enabled_for`); a server's
admins choose among those with ``/settings server-backend``. The choice is written under the guild's
lock like every other change of a server's rules, so a request is admitted entirely under the
old choice or the new one; :class:`bot.jobs.backends.BackendChoice` reads it.
"""

from __future__ import annotations

from bot.db import Sessions
from bot.errors import BotError
from bot.providers.registry import BackendSet
from bot.quotas.ledger import lock_guild


class BackendNotEnabled(BotError):
    key = "settings.backend_not_enabled"
    template = (
        "This server can't use the backend “{name}”: the bot's operator has not enabled it "
        "here. Choose one of: {allowed}."
    )


async def choose_backend(
    sessions: Sessions, backends: BackendSet, guild_id: int, name: str
) -> None:
    """Store ``name`` as the server's backend; BackendNotEnabled unless the operator enabled
    it for the server."""
    enabled = backends.enabled_for(guild_id)
    if name not in enabled:
        raise BackendNotEnabled(name=name[:64], allowed=", ".join(enabled))
    async with sessions() as session, session.begin():
        row = await lock_guild(session, guild_id)
        row.backend = name
