"""Which image backends a server may use, and which one its admins chose.

The operator configures the backends (``[provider]``, named "default", and ``[backends.NAME]``)
and may enable each for some servers only (``enabled_guilds``; empty: every server). A server's
admins choose among those with ``/settings server backend``; the choice is stored in
``guild_settings.backend``, written here only, under the guild's lock like every other change
of a server's rules (so a request is admitted entirely under the old choice or the new one).
Without a choice, or when the operator no longer enables the chosen backend, the server uses
the first backend enabled for it, "default" first.
"""

from __future__ import annotations

from sqlalchemy import select

from bot.config import ProviderSettings, Settings
from bot.db import Sessions
from bot.db.models import GuildSettings
from bot.errors import BotError
from bot.quotas.ledger import lock_guild

DEFAULT_BACKEND = "default"
#: The kinds of backend that take the Stable Diffusion options (negative, seed, steps, ...).
SD_KINDS = frozenset({"automatic1111", "comfyui"})


class BackendNotEnabled(BotError):
    key = "settings.backend_not_enabled"
    template = (
        "This server can't use the backend “{name}”: the bot's operator has not enabled it "
        "here. Choose one of: {allowed}."
    )


def configured(settings: Settings) -> dict[str, ProviderSettings]:
    """Every backend's settings by name, "default" first."""
    return {DEFAULT_BACKEND: settings.provider, **settings.backends}


def has_sd_backend(settings: Settings) -> bool:
    """Whether any configured backend takes the Stable Diffusion options."""
    return any(backend.type in SD_KINDS for backend in configured(settings).values())


def enabled_for(settings: Settings, guild_id: int | None) -> dict[str, ProviderSettings]:
    """The backends the operator lets ``guild_id`` use (a DM, None, only those for everyone)."""
    return {
        name: backend
        for name, backend in configured(settings).items()
        if not backend.enabled_guilds or guild_id in backend.enabled_guilds
    }


def _in_force(settings: Settings, guild_id: int | None, chosen: str | None) -> str:
    enabled = enabled_for(settings, guild_id)
    if chosen is not None and chosen in enabled:
        return chosen
    return next(iter(enabled), DEFAULT_BACKEND)


async def server_backend(sessions: Sessions, settings: Settings, guild_id: int | None) -> str:
    """The name of the backend that serves ``guild_id`` now (see the module's docstring)."""
    chosen = None
    if guild_id is not None:
        async with sessions() as session:
            chosen = await session.scalar(
                select(GuildSettings.backend).where(GuildSettings.guild_id == guild_id)
            )
    return _in_force(settings, guild_id, chosen)


async def choose_backend(sessions: Sessions, settings: Settings, guild_id: int, name: str) -> str:
    """Store ``name`` as the server's backend; BackendNotEnabled unless the operator enabled
    it for the server. Returns the backend in force (``name``)."""
    enabled = enabled_for(settings, guild_id)
    if name not in enabled:
        raise BackendNotEnabled(name=name[:64], allowed=", ".join(enabled) or "none")
    async with sessions() as session, session.begin():
        row = await lock_guild(session, guild_id)
        row.backend = name
    return name
