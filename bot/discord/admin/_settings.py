"""/settings server-backend: server admins choose their server's image backend.

Only among the backends the operator enabled for the server (``enabled_guilds``; "default",
``[provider]``, always); the choice is stored by :mod:`bot.quotas.backends` and read by
:class:`bot.jobs.backends.BackendChoice`. /settings is everyone's (members' own defaults,
:mod:`bot.discord.member`), so Discord cannot hide this subcommand: Manage Server is checked
when it runs. It exists only when the operator configured more than one backend: with one,
there is no choice.
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


def server_backend_command(
    catalog: Catalog, sessions: Sessions, backends: BackendSet, choice: BackendChoice
) -> app_commands.Command[Any, ..., None]:
    """/settings server-backend [name]"""

    def label(name: str) -> str:
        """A backend as admins see it: its name and its kind, "sdxl (automatic1111)"."""
        return f"{name} ({backends.settings[name].type})"

    @app_commands.command(
        name=text("server-backend", "cmd.settings.server_backend.name"),
        description=text(
            "See or choose the image backend this server uses",
            "cmd.settings.server_backend.description",
        ),
    )
    @app_commands.rename(backend=text("name", "opt.backend_name.name"))
    @app_commands.describe(
        backend=text(
            "The backend to use from now on (leave it out to see the current one)",
            "opt.backend_name.description",
        )
    )
    async def server_backend(
        interaction: discord.Interaction[Any], backend: Range[str, 1, 64] | None = None
    ) -> None:
        guild_id = require_manage_guild(interaction)
        locale = interaction.locale
        lines = []
        if backend is not None:
            await choose_backend(sessions, backends, guild_id, backend)
            choice.forget(guild_id)
            lines.append(catalog.text("settings.backend.done", locale, backend=label(backend)))
        current = await choice.for_guild(guild_id)
        enabled = backends.enabled_for(guild_id)
        lines.append(catalog.text("settings.backend.current", locale, backend=label(current)))
        lines.append(
            catalog.text(
                "settings.backend.available",
                locale,
                backends=", ".join(label(name) for name in enabled),
            )
        )
        await send_private(interaction, "\n".join(lines))

    @server_backend.autocomplete("backend")
    async def backend_choices(
        interaction: discord.Interaction[Any], current: str
    ) -> list[Choice[str]]:
        typed = current.strip().lower()
        return [
            Choice(name=label(name), value=name)
            for name in backends.enabled_for(interaction.guild_id)
            if typed in name.lower()
        ][:25]

    return server_backend
