"""Members' own commands: /settings (their defaults; the server's backend is a part the
admins' package brings) and /history (their recent results here).

A feature package like ``bot.discord.admin``: the modules are private; :func:`setup` adds the
commands to the bot's tree.
"""

from __future__ import annotations

from collections.abc import Iterable

from discord import app_commands
from discord.ext import commands

from bot.config import QuotaSettings
from bot.db import Sessions
from bot.discord.i18n import Catalog
from bot.discord.member._history import History, HistoryPageButton, history_command
from bot.discord.member._settings import SettingsGroup, SettingsPart
from bot.jobs.backends import BackendChoice
from bot.providers.registry import BackendSet
from bot.quotas.kept_defaults import KeptDefaults

__all__ = ["History", "SettingsPart", "setup"]


def setup(
    bot: commands.Bot,
    history: History,
    catalog: Catalog,
    sessions: Sessions,
    quotas: QuotaSettings,
    backends: tuple[BackendSet, BackendChoice],
    kept: KeptDefaults,
    parts: Iterable[SettingsPart] = (),
) -> None:
    """/settings show|set|reset for everyone, with ``parts`` (the admins' server-backend);
    /history, whose page buttons reach ``history`` as the client's ``history``."""
    group = SettingsGroup(catalog, sessions, quotas, *backends, kept, parts)
    bot.tree.add_command(app_commands.guild_only()(group))
    bot.tree.add_command(app_commands.guild_only()(history_command(history)))
    bot.add_dynamic_items(HistoryPageButton)
