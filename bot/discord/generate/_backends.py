"""The Stable Diffusion options' bounds and autocomplete: the loosest limits of the SD
backends (what Discord enforces), and the checkpoints and samplers of the backend the
member's server uses.

Commands are registered once for every server, so the suggestions follow each server's
backend (:class:`bot.jobs.backends.BackendChoice`). A backend's lists are asked for at most
once a minute: autocomplete runs on every keystroke, and a backend that is down gives no
suggestions rather than an error (the member may still type a name, which is checked).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import discord
from discord import app_commands
from discord.app_commands import Choice

from bot.jobs.backends import BackendChoice
from bot.providers.backend import SDChoice
from bot.providers.checks import SDLimits
from bot.providers.registry import BackendSet

log = logging.getLogger(__name__)

#: Seconds a backend's checkpoint or sampler list is reused for autocomplete.
CHOICES_TTL = 60.0
#: Discord shows at most 25 autocomplete choices.
MAX_CHOICES = 25
#: The options whose values come from the server's own lists, by autocomplete.
LISTED: tuple[SDChoice, ...] = ("sampler", "checkpoint")


@dataclass(eq=False)
class ServerBackends:
    backends: BackendSet
    #: Which backend a server's new jobs run on.
    choice: BackendChoice
    clock: Callable[[], float] = time.monotonic
    _cache: dict[tuple[str, str], tuple[float, tuple[str, ...]]] = field(
        default_factory=dict, init=False
    )

    async def suggestions(self, guild_id: int | None, option: SDChoice, typed: str) -> list[str]:
        """The values of ``option`` the server's backend offers that contain ``typed``."""
        name = await self.choice.for_guild(guild_id)
        values = await self._values(name, option)
        needle = typed.strip().lower()
        starts = [v for v in values if v.lower().startswith(needle)]
        inside = [v for v in values if needle in v.lower() and v not in starts]
        return (starts + inside)[:MAX_CHOICES]

    async def _values(self, name: str, option: SDChoice) -> tuple[str, ...]:
        cached = self._cache.get((name, option))
        now = self.clock()
        if cached is not None and now - cached[0] < CHOICES_TTL:
            return cached[1]
        backend = self.backends.for_job(name)
        if not backend.features.sd_options:
            return ()
        try:
            values = await backend.option_values(option)
        except Exception as exc:  # a suggestion list never fails the member's typing
            log.info("backend %s: no %s suggestions (%s)", name, option, type(exc).__name__)
            values = ()
        self._cache[(name, option)] = (now, values)
        return values


def sd_bounds(limits: list[SDLimits]) -> SDLimits | None:
    """The loosest limits of the SD backends (Discord's bounds); None when there is none."""
    if not limits:
        return None
    return SDLimits(
        max(limit.max_steps for limit in limits), max(limit.max_guidance for limit in limits)
    )


def add_suggestions(command: app_commands.Command[Any, ..., None], servers: ServerBackends) -> None:
    """Autocomplete for the listed options the command has, from the server's backend."""
    for option in LISTED:
        if command.get_parameter(option) is not None:
            command.autocomplete(option)(_suggester(servers, option))


def _suggester(
    servers: ServerBackends, option: SDChoice
) -> Callable[[discord.Interaction[Any], str], Coroutine[Any, Any, list[Choice[str]]]]:
    async def suggest(interaction: discord.Interaction[Any], current: str) -> list[Choice[str]]:
        values = await servers.suggestions(interaction.guild_id, option, current)
        # A choice's value is at most 100 characters: a longer name can still be typed.
        return [Choice(name=value, value=value) for value in values if len(value) <= 100]

    return suggest
