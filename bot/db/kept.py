"""Values read from the database and kept a few seconds: a server's blocked terms, its content
rules and backend choice, a member's defaults.

Every request needs them and they rarely change, so each is read once per few seconds rather
than once per request (issue 10). What matters most is the burst: after a quiet moment or a
restart, 200 requests of one server arriving at once all find nothing kept. Each reading for
itself made 200 reads of the same row queue for the database's connections before the first of
them could be answered, and under load the last ones missed Discord's 3 seconds. So requests
that need the same value while it is being read wait for that one read.

A value forgotten while it is read (an admin changed it) is not kept when that read ends: the
next request reads it again, and sees the change.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Kept(Generic[K, V]):
    """Each key's value as last read, for ``seconds``; at most ``most`` keys, the oldest read
    dropped first (a burst of new members must not grow it forever)."""

    def __init__(
        self, seconds: float, *, most: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.seconds = seconds
        self.most = most
        self._clock = clock
        #: Key -> (its value, when its read began); oldest read first.
        self._kept: dict[K, tuple[V, float]] = {}
        #: Key -> the read under way, which every request for that key waits for.
        self._reading: dict[K, asyncio.Task[V]] = {}

    async def get(self, key: K, read: Callable[[], Awaitable[V]]) -> V:
        """The value of ``key``: as kept, else from ``read()`` (one read for all who ask
        meanwhile; a failed read is kept by no one, each waiting request gets its error)."""
        kept = self._kept.get(key)
        if kept is not None and self._clock() - kept[1] < self.seconds:
            return kept[0]
        reading = self._reading.get(key)
        if reading is None:
            reading = asyncio.ensure_future(self._read(key, read))
            self._reading[key] = reading
        # Shielded: one request giving up (cancelled) does not cancel the others' read.
        return await asyncio.shield(reading)

    def last(self, key: K) -> V | None:
        """The value as last read, however old (None: never read, or forgotten)."""
        kept = self._kept.get(key)
        return kept[0] if kept is not None else None

    def forget(self, key: K) -> None:
        """The value changed: the next request reads it again (a read under way is not kept)."""
        self._kept.pop(key, None)
        self._reading.pop(key, None)

    async def _read(self, key: K, read: Callable[[], Awaitable[V]]) -> V:
        began = self._clock()
        current = asyncio.current_task()
        try:
            value = await read()
        finally:
            if self._reading.get(key) is current:
                del self._reading[key]
            else:
                current = None  # forgotten meanwhile: what it read may be the old value
        if current is not None:
            self._kept.pop(key, None)  # re-inserted last: the dict stays in reading order
            self._kept[key] = (value, began)
            while len(self._kept) > self.most:
                del self._kept[next(iter(self._kept))]
        return value
