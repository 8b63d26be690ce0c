"""Who the configured token is, and the invite link with exactly the permissions the bot uses."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
import discord

from bot.config import DiscordSettings
from bot.discord.bot import point_discord_at
from bot.errors import BotError, ConfigError

#: What the bot does in a channel: read it, post results (files, embeds), read results back for
#: reactions, and post in threads. Nothing else (no admin, no manage, no mention-everyone).
BOT_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    embed_links=True,
    attach_files=True,
    read_message_history=True,
    add_reactions=True,
)
SCOPES = ("bot", "applications.commands")


@dataclass(frozen=True)
class Identity:
    bot_name: str
    bot_id: int
    application_id: int
    #: The Developer Portal's "Public Bot" switch: anyone with the invite URL may add the bot.
    public: bool = True

    @property
    def invite_url(self) -> str:
        return invite_url(self.application_id)


def invite_url(application_id: int) -> str:
    return discord.utils.oauth_url(application_id, permissions=BOT_PERMISSIONS, scopes=SCOPES)


async def identify(settings: DiscordSettings) -> Identity:
    """Log in over REST only (no gateway) and read the bot user and its application."""
    point_discord_at(settings)
    client = discord.Client(intents=discord.Intents.none())
    try:
        try:
            await client.login(settings.token)
        except discord.LoginFailure:
            raise ConfigError(
                "Discord rejected the token: copy it again (Developer Portal > Bot > Reset Token)"
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise BotError(
                f"cannot reach Discord at {settings.api_base_url}: {type(exc).__name__}"
            ) from None
        application = await client.application_info()
        user = client.user
        assert user is not None
        return Identity(str(user), user.id, application.id, application.bot_public)
    finally:
        await client.close()
