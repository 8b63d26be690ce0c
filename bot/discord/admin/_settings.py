"""/settings backend: server admins choose their server's image backend.

Only among the backends the operator enabled for the server (``enabled_guilds``; "default",
``[provider]``, always); the choice is stored by :mod:`bot.quotas.backends` and read by
:class:`bot.jobs.backends.BackendChoice`. Like /quota, Discord hides the command from
members without Manage Server, and the permission is checked again when it runs. The command
exists only when the operator configured more than one backend: with one, there is no choice.
"""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands
from discord.app_commands import Choice, Range

from bot.db import Sessions
from bot.discord.admin._quota import require_manage_guild
from bot.discord.i18n import Catalog, text
from bot.discord.tree import send_private
from bot.jobs.backends import BackendChoice
from bot.providers.registry import BackendSet
from bot.quotas.backends import choose_backend


class SettingsGroup(app_commands.Group):
    """/settings backend [name]"""

    def __init__(
        self, catalog: Catalog, sessions: Sessions, backends: BackendSet, choice: BackendChoice
    ) -> None:
        super().__init__(
            name=text("settings", "cmd.settings.name"),
            description=text("See and change this server's settings", "cmd.settings.description"),
            default_permissions=discord.Permissions(manage_guild=True),
        )
        self.catalog, self.sessions = catalog, sessions
        self.backends, self.choice = backends, choice

    def _label(self, name: str) -> str:
        """A backend as admins see it: its name and its kind, "sdxl (automatic1111)"."""
        return f"{name} ({self.backends.settings[name].type})"

    @app_commands.command(
        name=text("backend", "cmd.settings.backend.name"),
        description=text(
            "See or choose the image backend this server uses",
            "cmd.settings.backend.description",
        ),
    )
    @app_commands.rename(backend=text("name", "opt.backend_name.name"))
    @app_commands.describe(
        backend=text(
            "The backend to use from now on (leave it out to see the current one)",
            "opt.backend_name.description",
        )
    )
    async def backend(
        self, interaction: discord.Interaction[Any], backend: Range[str, 1, 64] | None = None
    ) -> None:
        guild_id = require_manage_guild(interaction)
        catalog, locale = self.catalog, interaction.locale
        lines = []
        if backend is not None:
            await choose_backend(self.sessions, self.backends, guild_id, backend)
            self.choice.forget(guild_id)
            done = catalog.text("settings.backend.done", locale, backend=self._label(backend))
            lines.append(done)
        current = await self.choice.for_guild(guild_id)
        enabled = self.backends.enabled_for(guild_id)
        lines.append(catalog.text("settings.backend.current", locale, backend=self._label(current)))
        lines.append(
            catalog.text(
                "settings.backend.available",
                locale,
                backends=", ".join(self._label(name) for name in enabled),
            )
        )
        await send_private(interaction, "\n".join(lines))

    @backend.autocomplete("backend")
    async def backend_choices(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[Choice[str]]:
        typed = current.strip().lower()
        return [
            Choice(name=self._label(name), value=name)
            for name in self.backends.enabled_for(interaction.guild_id)
            if typed in name.lower()
        ][:25]
