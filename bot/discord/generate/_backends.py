"""The Stable Diffusion options' bounds and autocomplete: the loosest limits of the SD
backends (what Discord enforces), and the sizes, checkpoints and samplers of the backend the
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
from bot.providers.capabilities import SD_SIZES, ModelSpec, parse_size
from bot.providers.checks import SDLimits
from bot.providers.registry import BackendSet

log = logging.getLogger(__name__)

#: Seconds a backend's checkpoint or sampler list is reused for autocomplete.
CHOICES_TTL = 60.0
#: Discord shows at most 25 autocomplete choices.
MAX_CHOICES = 25
#: The options whose values come from the server's own lists, by autocomplete.
LISTED: tuple[SDChoice, ...] = ("sampler", "checkpoint")
#: Sizes suggested on a backend that takes any size on its grid (Stable Diffusion); any other
#: size the backend allows may be typed.
COMMON_SD_SIZES = SD_SIZES


@dataclass(eq=False)
class ServerBackends:
    backends: BackendSet
    #: Which backend a server's new jobs run on.
    choice: BackendChoice
    #: ``[quotas] allowed_sizes``: when set, the only sizes suggested (and accepted).
    allowed_sizes: tuple[str, ...] = ()
    clock: Callable[[], float] = time.monotonic
    _cache: dict[tuple[str, str], tuple[float, tuple[str, ...]]] = field(
        default_factory=dict, init=False
    )

    async def suggestions(self, guild_id: int | None, option: SDChoice, typed: str) -> list[str]:
        """The values of ``option`` the server's backend offers that contain ``typed``."""
        name = await self.choice.for_guild(guild_id)
        return _matching(await self._values(name, option), typed)

    async def sizes(self, guild_id: int | None, typed: str) -> list[str]:
        """The sizes the server's backend makes that match ``typed``: its listed sizes and, on
        a free-size backend, the common SD sizes it allows; a valid size typed in full first,
        so the member sees it is accepted."""
        backend = self.backends.for_job(await self.choice.for_guild(guild_id))
        spec = backend.spec_for(None)
        offered = offered_sizes(spec, self.allowed_sizes)
        size = typed_size(typed)
        free = not self.allowed_sizes and parse_size(size) is not None
        if free and size not in offered and spec.allows_size(size):
            offered.insert(0, size)
        return _matching(tuple(offered), size)

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


def offered_sizes(spec: ModelSpec, allowed_sizes: tuple[str, ...]) -> list[str]:
    """The sizes to suggest on ``spec``: the operator's allowed ones it makes, else its listed
    sizes and, when it takes free sizes, the common SD sizes it allows."""
    if allowed_sizes:
        return [size for size in allowed_sizes if spec.allows_size(size)]
    common = [size for size in COMMON_SD_SIZES if spec.free_size and spec.allows_size(size)]
    return list(dict.fromkeys([*spec.sizes, *common]))


def sizes_follow_server(backends: BackendSet) -> bool:
    """Whether the ``size`` option suggests each server's backend's sizes (autocomplete)
    instead of listing the default backend's (choices): with a Stable Diffusion backend (any
    multiple of 8 can be asked for), or backends that list different sizes. An OpenAI-only bot
    with one list keeps its choices: a short menu that needs no typing."""
    listed = backends.default.spec_for(None).sizes
    return any(
        backend.features.sd_options or backend.spec_for(None).sizes != listed
        for backend in backends
    )


def typed_size(typed: str) -> str:
    """A size as members type it ("1024 X 1024", "1024×1024") as the backends know it."""
    return "".join(typed.split()).lower().replace("×", "x")


def _matching(values: tuple[str, ...], typed: str) -> list[str]:
    """``values`` that start with ``typed`` first, then those that contain it (no case)."""
    needle = typed.strip().lower()
    starts = [v for v in values if v.lower().startswith(needle)]
    inside = [v for v in values if needle in v.lower() and v not in starts]
    return (starts + inside)[:MAX_CHOICES]


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


def add_size_suggestions(
    command: app_commands.Command[Any, ..., None], servers: ServerBackends
) -> None:
    """Autocomplete for the command's ``size`` option, from the server's backend."""

    async def suggest(interaction: discord.Interaction[Any], current: str) -> list[Choice[str]]:
        sizes = await servers.sizes(interaction.guild_id, current)
        return [Choice(name=size, value=size) for size in sizes]

    if command.get_parameter("size") is not None:
        command.autocomplete("size")(suggest)


def _suggester(
    servers: ServerBackends, option: SDChoice
) -> Callable[[discord.Interaction[Any], str], Coroutine[Any, Any, list[Choice[str]]]]:
    async def suggest(interaction: discord.Interaction[Any], current: str) -> list[Choice[str]]:
        values = await servers.suggestions(interaction.guild_id, option, current)
        # A choice's value is at most 100 characters: a longer name can still be typed.
        return [Choice(name=value, value=value) for value in values if len(value) <= 100]

    return suggest
