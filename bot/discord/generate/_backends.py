"""Autocomplete of the Stable Diffusion options whose values are the server's own: the
checkpoints and samplers of the backend the member's server uses.

Commands are registered once for every server, so the suggestions follow each server's
backend (:class:`bot.jobs.backends.BackendChoice`). A backend's lists are asked for at most
once a minute: autocomplete runs on every keystroke, and a backend that is down gives no
suggestions rather than an error (the member may still type a name, which is checked).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.jobs.backends import BackendChoice
from bot.providers.backend import SDChoice
from bot.providers.registry import BackendSet

log = logging.getLogger(__name__)

#: Seconds a backend's checkpoint or sampler list is reused for autocomplete.
CHOICES_TTL = 60.0
#: Discord shows at most 25 autocomplete choices.
MAX_CHOICES = 25


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
