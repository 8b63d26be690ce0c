"""Server admins' commands: /quota (limits), /usage (what was used), /settings (the backend).

A feature package in the manner of python-discord/bot's ``exts/<feature>/``: the modules are
private; :func:`setup` adds the feature's commands to the bot's tree.
"""

from __future__ import annotations

from typing import Any

from discord import app_commands

from bot.config import QuotaSettings, Settings
from bot.db import Sessions
from bot.discord.admin._quota import QuotaGroup
from bot.discord.admin._settings import SettingsGroup
from bot.discord.admin._usage import UsageGroup
from bot.discord.i18n import Catalog


def setup(
    tree: app_commands.CommandTree[Any],
    catalog: Catalog,
    sessions: Sessions,
    quotas: QuotaSettings,
    settings: Settings | None = None,
) -> None:
    """/quota and /usage; /settings too when ``settings`` configures more than one backend."""
    groups: list[app_commands.Group] = [
        QuotaGroup(catalog, sessions, quotas),
        UsageGroup(catalog, sessions, quotas),
    ]
    if settings is not None and settings.backends:
        groups.append(SettingsGroup(catalog, sessions, settings))
    for group in groups:
        tree.add_command(app_commands.guild_only()(group))
