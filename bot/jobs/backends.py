"""Which configured backend a job runs on: its server's choice, within what the operator allows.

A server's admins choose a backend (``guild_settings.backend``) among those the operator enabled
for it (``enabled_guilds``). A job made from another (Redo, Retry, Vary of a result) keeps the
backend of its source while that one is still there for the server. Anything else, a choice the
operator has since removed or disabled for the server included, runs on "default".

With one backend configured (most installations) nothing is read: every job is "default". With
more, the choice is read from the database and kept a few seconds, so a burst of requests costs
one read per server, and a new choice applies within moments in every process.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from functools import partial

from bot.config import DEFAULT_BACKEND
from bot.db import Sessions
from bot.db.kept import Kept
from bot.db.models import GuildSettings
from bot.generation import ImageOrder
from bot.providers.registry import BackendSet
from bot.providers.types import SD_FIELDS, StableDiffusionOptions

log = logging.getLogger(__name__)

#: Every Stable Diffusion option left at its default.
NO_SD_OPTIONS = {name: getattr(StableDiffusionOptions(), name) for name in SD_FIELDS}

#: Seconds a server's choice is kept before it is read again.
CHOICE_SECONDS = 5.0


class BackendChoice:
    def __init__(
        self,
        sessions: Sessions,
        backends: BackendSet,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._backends = backends
        #: Each server's chosen backend as stored.
        self._chosen: Kept[int, str | None] = Kept(CHOICE_SECONDS, clock=clock)

    async def resolve(self, order: ImageOrder, guild_id: int | None) -> ImageOrder:
        """``order`` with the backend it runs on: its own while the server may use it (a
        result's), else the server's choice."""
        if order.backend is not None and order.backend in self._backends.enabled_for(guild_id):
            return order
        chosen = await self.for_guild(guild_id)
        model = order.model
        if model is not None and model not in self._backends.get(chosen).models:
            # The commands name the default backend's model, a result its own backend's:
            # neither means anything on another backend, which uses its own default.
            model = None
        # A result's moderation level need not hold on another backend's model: the server's
        # rules decide it again at admission (bot.moderation.nsfw.apply_rules).
        moved = dataclasses.replace(order, backend=chosen, model=model, moderation=None)
        if order.backend is not None and not self._backends.get(chosen).features.sd_options:
            # A result's Stable Diffusion options cannot be left out of a button's request:
            # on a backend without them it runs without them, rather than being refused.
            moved = dataclasses.replace(moved, **NO_SD_OPTIONS)
        if (
            moved.input_fidelity is not None
            and not self._backends.get(chosen).spec_for(model).input_fidelity
        ):
            # The same for a Vary (Subtle)/(Strong) of a GPT image model's result.
            moved = dataclasses.replace(moved, input_fidelity=None)
        return moved

    async def for_guild(self, guild_id: int | None) -> str:
        """The backend the server's new jobs run on (direct messages: "default")."""
        if guild_id is None or len(self._backends.names()) == 1:
            return DEFAULT_BACKEND
        chosen = await self._stored(guild_id)
        if chosen is None or chosen == DEFAULT_BACKEND:
            return DEFAULT_BACKEND
        if chosen not in self._backends.enabled_for(guild_id):
            log.warning(
                "guild %d chose the backend %r, which is %s: its jobs run on the default",
                guild_id,
                chosen,
                "not enabled for it" if chosen in self._backends.names() else "not configured",
                extra={"guild_id": guild_id},
            )
            return DEFAULT_BACKEND
        return chosen

    async def chosen_by_admins(self, guild_id: int | None) -> str | None:
        """The backend the server's admins chose, while it is theirs to use; None when they
        chose none (a member's own default backend may then apply, bot.quotas.member_defaults).
        """
        if guild_id is None or len(self._backends.names()) == 1:
            return None
        chosen = await self._stored(guild_id)
        return chosen if chosen in self._backends.enabled_for(guild_id) else None

    def forget(self, guild_id: int) -> None:
        """The server's choice changed (its admin command): read it again next time."""
        self._chosen.forget(guild_id)

    async def _stored(self, guild_id: int) -> str | None:
        return await self._chosen.get(guild_id, partial(self._read, guild_id))

    async def _read(self, guild_id: int) -> str | None:
        async with self._sessions() as session:
            row = await session.get(GuildSettings, guild_id)
            return row.backend if row is not None else None
