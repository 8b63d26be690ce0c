"""Decides which job runs next and when: fair order, a concurrency limit, the rate limit.

It knows nothing of the database or Discord: it is handed queued jobs and a coroutine that runs
one. It sleeps on an event that a new job, a finished job, an answered request or the rate
limiter's timer sets, so it never polls, and it starts a job the moment one may start.

Whoever shows positions (the Discord status messages, tests waiting for an idle queue) gets its
own event from :meth:`Dispatcher.watch`: one shared event cleared by one reader would hide
changes from the others.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.jobs.fairqueue import FairQueue, QueuedJob
from bot.jobs.ratelimit import ImageRateLimiter

log = logging.getLogger(__name__)

#: Assumed time of one request until real ones have been measured.
DEFAULT_RUN_SECONDS = 15.0
#: What a job running longer than the average is still expected to take.
MIN_REMAINING = 1.0


@dataclass(frozen=True)
class Place:
    """Where a waiting job stands: how many jobs will start before it, and roughly when it will."""

    position: int
    eta_seconds: float


class Dispatcher:
    def __init__(
        self,
        run: Callable[[QueuedJob], Awaitable[None]],
        *,
        concurrency: int,
        limiter: ImageRateLimiter,
    ) -> None:
        self._run = run
        self._concurrency = concurrency
        self._limiter = limiter
        self.queue = FairQueue()
        self.running: dict[int, QueuedJob] = {}
        #: When each running job started (monotonic), for the estimated waits.
        self._started: dict[int, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._watchers: weakref.WeakSet[asyncio.Event] = weakref.WeakSet()
        self._loop_task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._average_run = DEFAULT_RUN_SECONDS
        self._paused = False

    # --- what the runner calls -----------------------------------------------------------------

    def push(self, job: QueuedJob) -> None:
        self.queue.push(job)
        self._poke()

    def remove(self, job_id: int) -> bool:
        removed = self.queue.remove(job_id) is not None
        if removed:
            self._poke()
        return removed

    def request_done(self, job_id: int) -> None:
        """The provider answered ``job_id``: its images' rate-limit window starts now."""
        self._limiter.finish(job_id)
        self._wake.set()

    def watch(self) -> asyncio.Event:
        """An event set whenever positions may have changed; the caller clears its own copy."""
        event = asyncio.Event()
        self._watchers.add(event)
        return event

    def unwatch(self, event: asyncio.Event) -> None:
        self._watchers.discard(event)

    def start(self) -> None:
        if self._loop_task is None:
            self._loop_task = asyncio.create_task(self._dispatch(), name="dispatcher")
            self._poke()

    def pause(self) -> None:
        """Start nothing new (shutdown); running jobs go on."""
        self._paused = True

    async def wait_running(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Until the running jobs finish; False when ``timeout`` passed first."""
        tasks = list(self._tasks)
        if not tasks:
            return True
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        return not pending

    async def stop(self) -> None:
        """Stop dispatching and cancel what still runs (it stays in the database as running)."""
        self._paused = True
        if self._timer is not None:
            self._timer.cancel()
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def alive(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done()

    def starts_now(self, job_id: int) -> bool:
        """Whether ``job_id`` is next and nothing holds it back (its place is not worth showing)."""
        head = self.queue.peek()
        return (
            head is not None
            and head.job_id == job_id
            and not self._paused
            and len(self.running) < self._concurrency
            and self._limiter.delay(head.images) == 0
        )

    def places(self) -> dict[int, Place]:
        """Position and estimated wait of every queued job (O(queued jobs x log concurrency)).

        A simulation with the average run time: each job takes the slot that frees first (a
        running job's slot frees an average run after it started), and no job starts before
        the images ahead of it fit the provider's rate.
        """
        now = time.monotonic()
        average = self._average_run
        rate = self._limiter.per_minute / self._limiter.window
        # Seconds from now until each slot is free; an overdue job is expected any moment.
        slots = [max(started + average - now, MIN_REMAINING) for started in self._started.values()]
        slots += [0.0] * max(self._concurrency - len(slots), 0)
        heapq.heapify(slots)
        places: dict[int, Place] = {}
        images_ahead = sum(job.images for job in self.running.values())
        for position, job in enumerate(self.queue.order()):
            start = max(heapq.heappop(slots), images_ahead / rate)
            places[job.job_id] = Place(position + 1, start)
            heapq.heappush(slots, start + average)
            images_ahead += job.images
        return places

    # --- the loop ------------------------------------------------------------------------------

    def _poke(self) -> None:
        self._wake.set()
        self._changed()

    def _changed(self) -> None:
        for event in self._watchers:
            event.set()

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while not self._paused and self.queue and len(self.running) < self._concurrency:
                head = self.queue.peek()
                assert head is not None
                wait = self._limiter.delay(head.images)
                if wait > 0:
                    if self._timer is not None:
                        self._timer.cancel()
                        self._timer = None
                    if wait < math.inf:  # else an answered request wakes us (request_done)
                        self._timer = loop.call_later(wait, self._wake.set)
                    break
                job = self.queue.pop()
                assert job is not None
                # Counted until the provider answers: it counts the request when it receives it.
                self._limiter.acquire(job.images, key=job.job_id)
                self.running[job.job_id] = job
                self._started[job.job_id] = time.monotonic()
                task = asyncio.create_task(self._execute(job), name=f"job-{job.job_id}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                self._changed()

    async def _execute(self, job: QueuedJob) -> None:
        started = time.monotonic()
        try:
            await self._run(job)
        except Exception:
            log.exception("job %d: the runner failed", job.job_id)
        finally:
            self._limiter.finish(job.job_id)  # if the runner did not say so earlier
            elapsed = time.monotonic() - started
            self._average_run = 0.8 * self._average_run + 0.2 * elapsed
            self.running.pop(job.job_id, None)
            self._started.pop(job.job_id, None)
            self._poke()
