"""The provider's rate limit, kept on our side so bursts never draw 429s.

Two rules, both counted in images (a request for n images costs n):

* spacing (GCRA): images leave at the provider's average rate, with a small burst allowance so
  a quiet bot still answers the first few requests at once;
* a sliding window one second longer than the provider's minute, which is what actually
  guarantees "at most L images in any 60 s" even with network jitter between our clock and the
  provider's.

The provider counts a request when it *receives* it, which is some time after the dispatcher
decided to start the job (reading the job, preparing uploads, connecting) and before the answer
comes back. So a request acquired with a ``key`` stays in the window for as long as it is in
flight, and its window starts only when :meth:`ImageRateLimiter.finish` says it was answered:
later than the provider's, never earlier, however slow the way there was.

The dispatcher asks :meth:`ImageRateLimiter.delay` and sleeps on a timer for exactly that long
(or, when only requests in flight stand in the way, until one of them is answered), instead of
polling.

When the provider answers 429 all the same and says how long to wait (``retry-after``),
:meth:`ImageRateLimiter.pause` holds back every other request until then: they would only draw
429s too. (Several processes on PostgreSQL share bot.jobs.sharedlimit instead.)
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Hashable

WINDOW_SECONDS = 60.0
#: Extra seconds per minute of window: covers travel time and clock differences.
WINDOW_MARGIN = 1.0


class ImageRateLimiter:
    def __init__(
        self,
        per_minute: int,
        *,
        burst: int | None = None,
        window: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``window`` is the provider's "minute"; benchmarks shrink it to run faster."""
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self.per_minute = per_minute
        self.window = window
        self._interval = window / per_minute
        self._burst = burst if burst is not None else max(1, per_minute // 10)
        self._window = window * (1 + WINDOW_MARGIN / WINDOW_SECONDS)
        self._clock = clock
        self._next_free = 0.0  # GCRA "theoretical arrival time"
        #: Answered requests: (when their window started, images), oldest first.
        self._sent: deque[tuple[float, int]] = deque()
        #: Requests in flight by key: images that count until they are answered.
        self._flying: dict[Hashable, int] = {}
        self._in_window = 0
        #: Nothing is sent before this (a 429's retry-after).
        self._paused_until = 0.0

    def _expire(self, now: float) -> None:
        while self._sent and self._sent[0][0] <= now - self._window:
            _, n = self._sent.popleft()
            self._in_window -= n

    def delay(self, images: int) -> float:
        """Seconds until ``images`` may be sent; 0 when they may go now.

        ``math.inf`` when only requests in flight hold the window: the wait ends when one of
        them is answered (:meth:`finish`), which nobody can time in advance."""
        now = self._clock()
        self._expire(now)
        tolerance = (self._burst - 1) * self._interval
        wait = max(0.0, self._next_free - tolerance - now, self._paused_until - now)
        images = min(images, self.per_minute)  # a request bigger than the limit waits for all
        excess = self._in_window + images - self.per_minute
        if excess > 0:
            freed = 0
            for sent_at, n in self._sent:
                freed += n
                if freed >= excess:
                    wait = max(wait, sent_at + self._window - now)
                    break
            else:
                return math.inf
        return wait if wait > 1e-9 else 0.0  # float noise is not a reason to wait

    def acquire(self, images: int, key: Hashable | None = None) -> None:
        """Record ``images`` sent now (call when :meth:`delay` said 0).

        With a ``key`` they stay counted until :meth:`finish` is called with it, and their
        window starts then."""
        now = self._clock()
        self._expire(now)
        self._next_free = max(self._next_free, now) + images * self._interval
        if key is None:
            self._sent.append((now, images))
        else:
            self._flying[key] = self._flying.get(key, 0) + images
        self._in_window += images

    def pause(self, seconds: float) -> None:
        """The provider asked to wait ``seconds``: nothing more is sent until then. A shorter
        pause never shortens a longer one."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    def finish(self, key: Hashable) -> None:
        """The request acquired under ``key`` was answered (or never sent); idempotent."""
        images = self._flying.pop(key, None)
        if images is not None:
            self._sent.append((self._clock(), images))

    def release(self, key: Hashable) -> None:
        """The request acquired under ``key`` is not sent after all (refused before it went
        out): its images leave the window and give their spacing back; idempotent."""
        images = self._flying.pop(key, None)
        if images is not None:
            self._in_window -= images
            self._next_free -= images * self._interval

    @property
    def in_flight(self) -> int:
        """Images of requests acquired with a key and not finished yet."""
        return sum(self._flying.values())

    @property
    def images_in_window(self) -> int:
        self._expire(self._clock())
        return self._in_window
