"""The discord.py client, connected wherever the config says.

``api_base_url`` and ``gateway_url`` are config keys because large deployments put REST proxies
and self-hosted gateways in front of Discord, and because the tests point them at a fake Discord
on 127.0.0.1. discord.py reads both from class attributes, so they are set before login.
"""

from __future__ import annotations

import logging

import discord
import yarl
from discord.ext import commands

from bot.config import DiscordSettings

log = logging.getLogger(__name__)


def point_discord_at(settings: DiscordSettings) -> None:
    """Make discord.py talk to the configured REST base and gateway (process-wide)."""
    discord.http.Route.BASE = settings.api_base_url.rstrip("/")
    if settings.gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.gateway_url)


def bot_intents() -> discord.Intents:
    """The least the bot needs: guilds (channels, permissions) and reactions. None privileged."""
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_reactions = True
    return intents


class ImageBot(commands.Bot):
    def __init__(self, settings: DiscordSettings, **options: object) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=bot_intents(),
            help_command=None,
            allowed_mentions=discord.AllowedMentions.none(),
            **options,  # type: ignore[arg-type]
        )
        self.settings = settings

    async def on_ready(self) -> None:
        user = self.user
        log.info(
            "connected as %s (id %s) in %d guilds", user, user.id if user else "?", len(self.guilds)
        )
