"""Members' defaults as last read, so a request does not read ``member_settings`` each time.

Every /imagine takes the member's defaults (:mod:`bot.quotas.member_defaults`); reading them is
one query and a transaction, a few milliseconds of the event loop on the hot path (issue 10).
Most members never set any, so most reads find nothing, again and again. A member's defaults
are kept :data:`DEFAULTS_SECONDS` and forgotten at once when they change them here
(/settings). A member who is in servers whose shards run on different gateway processes, and
changes a default in one, is seen with the new default by the others within
:data:`DEFAULTS_SECONDS`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

from bot.db import Sessions
from bot.db.kept import Kept
from bot.quotas.member_defaults import MemberDefaults, load_defaults

#: Seconds a member's defaults are kept before they are read again.
DEFAULTS_SECONDS = 5.0
#: Most members kept; the oldest go first (a burst of new members must not grow it forever).
KEPT_MEMBERS = 10_000


class KeptDefaults:
    """Each member's :class:`MemberDefaults`, read when needed and kept a few seconds."""

    def __init__(self, sessions: Sessions, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._sessions = sessions
        self._kept: Kept[int, MemberDefaults] = Kept(
            DEFAULTS_SECONDS, most=KEPT_MEMBERS, clock=clock
        )

    async def of(self, user_id: int) -> MemberDefaults:
        return await self._kept.get(user_id, partial(load_defaults, self._sessions, user_id))

    def forget(self, user_id: int) -> None:
        """The member changed their defaults: read them again next time."""
        self._kept.forget(user_id)
