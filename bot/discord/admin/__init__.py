"""Server admins' commands: /quota (limits) and /usage (what was used).

A feature package in the manner of python-discord/bot's ``exts/<feature>/``: the modules are
private; :func:`setup` adds the feature's commands to the bot's tree.
"""

from __future__ import annotations

from typing import Any

from discord import app_commands

from bot.config import QuotaSettings
from bot.db import Sessions
from bot.discord.admin._quota import QuotaGroup
from bot.discord.admin._usage import UsageGroup
from bot.discord.i18n import Catalog


def setup(
    tree: app_commands.CommandTree[Any], catalog: Catalog, sessions: Sessions, quotas: QuotaSettings
) -> None:
    for group in (QuotaGroup(catalog, sessions, quotas), UsageGroup(catalog, sessions, quotas)):
        tree.add_command(app_commands.guild_only()(group))
