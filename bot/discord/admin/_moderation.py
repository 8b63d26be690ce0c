"""/moderation: server admins' content rules (blocked terms, NSFW channels, spoilers, the
audit channel).

The group only gathers its parts: each feature builds its own subcommand group or commands in
a module of its own and :func:`bot.discord.admin.setup` passes them in. Like /quota, Discord
hides the group from members without Manage Server, and every part checks the permission again
when it runs (:func:`bot.discord.admin._quota.require_manage_guild`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import discord
from discord import app_commands

from bot.discord.i18n import text

ModerationPart = app_commands.Group | app_commands.Command[Any, ..., Any]


class ModerationGroup(app_commands.Group):
    """/moderation …, made of the parts the features bring."""

    def __init__(self, parts: Iterable[ModerationPart]) -> None:
        super().__init__(
            name=text("moderation", "cmd.moderation.name"),
            description=text(
                "Set this server's content rules and audit channel", "cmd.moderation.description"
            ),
            default_permissions=discord.Permissions(manage_guild=True),
        )
        for part in parts:
            self.add_command(part)
