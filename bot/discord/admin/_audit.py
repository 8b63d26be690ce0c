"""/moderation audit-channel: where every job of the server and every refusal is logged.

Server admins choose a channel (the bot checks it can post entries there first, and names what
it lacks), turn it off, or see the current one. The choice is stored by
:func:`bot.moderation.audit.set_audit_channel`; the entries are posted by
:mod:`bot.discord.admin._audit_poster`.
"""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands

from bot.db import Sessions
from bot.discord.admin._quota import require_manage_guild
from bot.discord.i18n import Catalog, text
from bot.discord.tree import send_private
from bot.errors import BotError
from bot.moderation.audit import audit_channel_of, set_audit_channel

#: What the bot needs in the audit channel, as Discord's interface names each permission.
NEEDED = (
    ("view_channel", "View Channel"),
    ("send_messages", "Send Messages"),
    ("embed_links", "Embed Links"),
    ("attach_files", "Attach Files"),
)


class AuditChannelUnusable(BotError):
    key = "audit.channel_unusable"
    template = "I can't post audit entries in {channel}: I'm missing {permissions} there."


class AuditChoiceUnclear(BotError):
    key = "audit.choice_unclear"
    template = "Choose a channel or turn the audit channel off, not both."


def missing_permissions(permissions: discord.Permissions) -> list[str]:
    """What of :data:`NEEDED` ``permissions`` lacks, by Discord's names."""
    return [shown for name, shown in NEEDED if not getattr(permissions, name)]


async def bot_permissions_in(
    interaction: discord.Interaction[Any], channel: discord.TextChannel
) -> discord.Permissions:
    """The bot's permissions in ``channel`` (from the gateway's cache; fetched if not there)."""
    guild = interaction.guild
    assert guild is not None
    me = guild.me
    if me is None:
        user = interaction.client.user
        assert user is not None
        me = await guild.fetch_member(user.id)
    return channel.permissions_for(me)


def audit_channel_command(
    catalog: Catalog, sessions: Sessions
) -> app_commands.Command[Any, ..., Any]:
    """The /moderation part: ``audit-channel [channel] [off]``."""

    @app_commands.command(
        name=text("audit-channel", "cmd.moderation.audit_channel.name"),
        description=text(
            "See, choose or turn off the channel where every job is logged",
            "cmd.moderation.audit_channel.description",
        ),
    )
    @app_commands.rename(
        channel=text("channel", "opt.channel.name"),
        off=text("off", "opt.audit_off.name"),
    )
    @app_commands.describe(
        channel=text(
            "The channel for audit entries (leave it out to see the current one)",
            "opt.audit_channel.description",
        ),
        off=text("Stop posting audit entries", "opt.audit_off.description"),
    )
    async def audit_channel(
        interaction: discord.Interaction[Any],
        channel: discord.TextChannel | None = None,
        off: bool = False,
    ) -> None:
        guild_id = require_manage_guild(interaction)
        locale = interaction.locale
        if channel is not None and off:
            raise AuditChoiceUnclear()
        if channel is not None:
            missing = missing_permissions(await bot_permissions_in(interaction, channel))
            if missing:
                raise AuditChannelUnusable(channel=channel.mention, permissions=", ".join(missing))
            await set_audit_channel(sessions, guild_id, channel.id)
            answer = catalog.text("audit.channel.set", locale, channel=channel.mention)
        elif off:
            await set_audit_channel(sessions, guild_id, None)
            answer = catalog.text("audit.channel.off", locale)
        else:
            current = await audit_channel_of(sessions, guild_id)
            answer = (
                catalog.text("audit.channel.none", locale)
                if current is None
                else catalog.text("audit.channel.current", locale, channel=f"<#{current}>")
            )
        await send_private(interaction, answer)

    return audit_channel
