"""How often one member may ask: a token bucket per member over every way in.

Commands, buttons, modals and reactions all take a token, so a member cannot make the bot do
work (download, probe, answer) faster than ``[jobs] member_requests_per_minute``. The bucket is
full at the start (a short burst is fine) and refills evenly. In memory: a restart forgives.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from bot.quotas.policy import TooManyRequests

#: Buckets of members who have not asked for this long are full again: forgotten.
IDLE_SECONDS = 120.0


class MemberRequestLimiter:
    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._rate = per_minute / 60.0
        self._clock = clock
        #: member -> (tokens, when they were counted)
        self._buckets: dict[int, tuple[float, float]] = {}

    def take(self, user_id: int) -> None:
        """Use one of the member's requests, or raise TooManyRequests saying when to retry."""
        now = self._clock()
        self._forget_idle(now)
        tokens, then = self._buckets.get(user_id, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - then) * self._rate)
        if tokens < 1.0:
            self._buckets[user_id] = (tokens, now)
            seconds = max(1, math.ceil((1.0 - tokens) / self._rate))
            raise TooManyRequests(limit=self.per_minute, seconds=seconds)
        self._buckets[user_id] = (tokens - 1.0, now)

    def _forget_idle(self, now: float) -> None:
        if len(self._buckets) < 1024:
            return
        idle = [user for user, (_, then) in self._buckets.items() if now - then > IDLE_SECONDS]
        for user in idle:
            del self._buckets[user]
