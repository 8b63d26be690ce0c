"""What the commands need to know about a server's backend: its Stable Diffusion limits (for
the checks at submit) and the checkpoints and samplers it offers (for autocomplete).

Commands are registered once for every server, so the SD options exist when any backend takes
them; each request is then checked against its own server's backend. The server's lists are
asked for at most once a minute per backend: autocomplete runs on every keystroke, and a
backend that is down gives no suggestions rather than an error (the member may still type).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from bot.config import Settings
from bot.db import Sessions
from bot.generation import ImageOrder, check_order
from bot.providers import ImagesClient
from bot.providers.backend import SDChoice
from bot.providers.checks import SDLimits
from bot.quotas import backends

log = logging.getLogger(__name__)

#: Seconds a backend's checkpoint or sampler list is reused for autocomplete.
CHOICES_TTL = 60.0
#: Discord shows at most 25 autocomplete choices.
MAX_CHOICES = 25


class OptionSource(Protocol):
    """The part of a backend autocomplete uses (:meth:`bot.providers.Backend.option_values`)."""

    async def option_values(self, option: SDChoice) -> tuple[str, ...]: ...


@dataclass(eq=False)
class ServerBackends:
    settings: Settings
    sessions: Sessions
    #: The running backend called NAME, or None (not built).
    lookup: Callable[[str], OptionSource | None] = lambda name: None
    clock: Callable[[], float] = time.monotonic
    _cache: dict[tuple[str, str], tuple[float, tuple[str, ...]]] = field(
        default_factory=dict, init=False
    )

    async def name_of(self, guild_id: int | None) -> str:
        """The backend serving ``guild_id``; no database read when only one is configured."""
        if not self.settings.backends:
            return backends.DEFAULT_BACKEND
        return await backends.server_backend(self.sessions, self.settings, guild_id)

    def limits_of(self, name: str) -> SDLimits | None:
        """The SD limits of the backend ``name``; None when it takes no SD options."""
        configured = backends.configured(self.settings).get(name)
        return SDLimits.of(configured) if configured is not None else None

    async def check(self, provider: ImagesClient, order: ImageOrder, guild_id: int | None) -> None:
        """:func:`bot.generation.check_order` against the limits of ``guild_id``'s backend."""
        check_order(provider, order, self.limits_of(await self.name_of(guild_id)))

    async def suggestions(self, guild_id: int | None, option: SDChoice, typed: str) -> list[str]:
        """The values of ``option`` the server's backend offers that contain ``typed``."""
        name = await self.name_of(guild_id)
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
        source = self.lookup(name)
        if source is None or self.limits_of(name) is None:
            return ()
        try:
            values = await source.option_values(option)
        except Exception as exc:  # a suggestion list never fails the member's typing
            log.info("backend %s: no %s suggestions (%s)", name, option, type(exc).__name__)
            values = ()
        self._cache[(name, option)] = (now, values)
        return values
