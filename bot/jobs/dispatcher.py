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
import contextlib
import heapq
import logging
import math
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass

from bot.jobs.fairqueue import FairQueue, QueuedJob
from bot.jobs.ratelimit import ImageRateLimiter

log = logging.getLogger(__name__)

#: Assumed time of one request until real ones have been measured.
DEFAULT_RUN_SECONDS = 15.0
#: What a job running longer than the average is still expected to take.
MIN_REMAINING = 1.0
#: Positions are counted this far and no further: a job behind more is shown as "1000+ ahead"
#: (counting 100,000 places for every submit and status update blocked the loop for a second).
POSITION_CAP = 1000


@dataclass(frozen=True)
class Place:
    """Where a waiting job stands: how many jobs will start before it, and roughly when it will.

    A job further back than :data:`POSITION_CAP` has the position ``POSITION_CAP + 1`` and the
    wait of the job at the cap (it starts no earlier)."""

    position: int
    eta_seconds: float

    @property
    def far(self) -> bool:
        """More than :data:`POSITION_CAP` jobs start before it: not counted exactly."""
        return self.position > POSITION_CAP


class RunningCap:
    """Jobs running at once over several dispatchers together (``[jobs] concurrency`` over
    every backend's), shared fairly: a dispatcher with jobs waiting and none running always
    gets the next free slot, so a busy backend cannot take them all while another waits."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.running = 0
        self._lanes: deque[Dispatcher] = deque()
        #: Running jobs failed over from their own lane to another (see :meth:`Dispatcher.slot`).
        self.away: set[int] = set()

    def may_start(self, lane: Dispatcher) -> bool:
        if self.running >= self.limit:
            return False
        if not lane.running:
            return True
        starved = sum(1 for other in self._lanes if other is not lane and other.starved)
        return self.running + starved < self.limit

    def take(self) -> None:
        self.running += 1

    def give(self) -> None:
        self.running -= 1
        for lane in self._lanes:
            lane.wake()
        # Of those that may, the first woken takes the slot: another comes first next time.
        self._lanes.rotate(-1)

    def wake_all(self) -> None:
        for lane in self._lanes:
            lane.wake()

    def join(self, lane: Dispatcher) -> None:
        self._lanes.append(lane)


class Dispatcher:
    def __init__(
        self,
        run: Callable[[QueuedJob], Awaitable[None]],
        *,
        concurrency: int,
        limiter: ImageRateLimiter,
        cap: RunningCap | None = None,
    ) -> None:
        """``cap``: a limit this dispatcher shares with others (one per backend), besides its
        own ``concurrency``."""
        self._run = run
        self._concurrency = concurrency
        self._limiter = limiter
        self._cap = cap or RunningCap(concurrency)
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
        #: Jobs of other lanes failed over to this one (see :meth:`slot`), and those waiting.
        self.borrowed: dict[int, QueuedJob] = {}
        self._borrowers: list[asyncio.Event] = []
        #: Whether the next free slot is the queue's (else a moved job's, when one waits).
        self._queue_turn = True
        self._cap.join(self)

    # --- what the runner calls -----------------------------------------------------------------

    def push(self, job: QueuedJob) -> None:
        self.queue.push(job)
        self._poke()

    def remove(self, job_id: int) -> bool:
        removed = self.queue.remove(job_id) is not None
        if removed:
            self._poke()
        return removed

    @contextlib.asynccontextmanager
    async def slot(self, job: QueuedJob) -> AsyncIterator[None]:
        """One of this lane's slots for ``job`` of another lane, failed over to this backend.

        Moved jobs and this lane's queue take the slots that free in turn, so neither starves
        the other while a backend is down. The job no longer counts on its own lane (it asks
        that backend nothing more): two lanes that fail over to each other never wait for each
        other. The total cap stays taken once, by its own lane."""
        self._cap.away.add(job.job_id)
        self._cap.wake_all()  # its own lane has a slot free now
        self._wake.set()  # this lane's next job may start first, if it is its turn
        while self.busy >= self._concurrency or (self._queue_turn and self._head_may_start()):
            freed = asyncio.Event()
            self._borrowers.append(freed)
            try:
                await freed.wait()
            finally:
                self._borrowers.remove(freed)
        self.borrowed[job.job_id] = job
        self._queue_turn = True
        self._changed()
        try:
            yield
        finally:
            del self.borrowed[job.job_id]
            self._freed()

    @property
    def busy(self) -> int:
        """Slots taken: its own running jobs except those failed over elsewhere, and the
        jobs failed over to it."""
        away = sum(1 for job_id in self.running if job_id in self._cap.away)
        return len(self.running) - away + len(self.borrowed)

    def request_done(self, job_id: int) -> None:
        """The provider answered ``job_id``: its images' rate-limit window starts now."""
        self._limiter.finish(job_id)
        self._wake.set()

    def request_unsent(self, job_id: int) -> None:
        """``job_id``'s request is not sent after all (the moderation pre-check refused it):
        its images count against no rate limit."""
        self._limiter.release(job_id)
        self._wake.set()

    def wake(self) -> None:
        """Look again whether a job may start (a slot shared with others freed)."""
        self._wake.set()

    @property
    def starved(self) -> bool:
        """Jobs wait and none runs: it gets the next slot it shares with others."""
        return bool(self.queue) and not self.running and not self._paused

    def watch(self, event: asyncio.Event | None = None) -> asyncio.Event:
        """An event set whenever positions may have changed; the caller clears its own copy
        (``event``: one the caller also has set by other dispatchers)."""
        event = event or asyncio.Event()
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
            and self.busy < self._concurrency
            and (self._queue_turn or not self._borrowers)
            and self._cap.may_start(self)
            and self._limiter.delay(head.images) == 0
        )

    def places(self, job_ids: Iterable[int]) -> dict[int, Place]:
        """Position and estimated wait of each of ``job_ids`` that is queued.

        A simulation with the average run time, walked only as far as the last of them or
        :data:`POSITION_CAP` (O(min(that, queued jobs) x log concurrency), not O(queued)): each
        job takes the slot that frees first (a running job's slot frees an average run after it
        started), and no job starts before the images ahead of it fit the provider's rate.
        """
        wanted = {job_id for job_id in job_ids if job_id in self.queue}
        if not wanted:
            return {}
        now = time.monotonic()
        average = self._average_run
        rate = self._limiter.per_minute / self._limiter.window
        # Seconds from now until each slot is free; an overdue job is expected any moment.
        slots = [max(started + average - now, MIN_REMAINING) for started in self._started.values()]
        slots += [0.0] * max(self._concurrency - len(slots), 0)
        heapq.heapify(slots)
        places: dict[int, Place] = {}
        images_ahead = sum(job.images for job in self.running.values())
        start = 0.0
        for position, job in enumerate(self.queue.order(), start=1):
            if position > POSITION_CAP:
                break
            start = max(heapq.heappop(slots), images_ahead / rate)
            if job.job_id in wanted:
                places[job.job_id] = Place(position, start)
                if len(places) == len(wanted):
                    return places
            heapq.heappush(slots, start + average)
            images_ahead += job.images
        beyond = Place(POSITION_CAP + 1, start)
        return {job_id: places.get(job_id, beyond) for job_id in wanted}

    # --- the loop ------------------------------------------------------------------------------

    def _freed(self) -> None:
        """A slot is free: the moved jobs waiting and the queue look again (in turn)."""
        for borrower in self._borrowers:
            borrower.set()
        self._poke()

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
            while (
                not self._paused
                and self.queue
                and self.busy < self._concurrency
                and (self._queue_turn or not self._borrowers)
                and self._cap.may_start(self)
            ):
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
                self._cap.take()
                self.running[job.job_id] = job
                self._started[job.job_id] = time.monotonic()
                self._queue_turn = False
                task = asyncio.create_task(self._execute(job), name=f"job-{job.job_id}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                self._changed()
            for borrower in self._borrowers:  # a moved job's turn, maybe: it looks again
                borrower.set()

    def _head_may_start(self) -> bool:
        """The next job of this lane's queue may start now, but for a free slot."""
        head = self.queue.peek()
        return (
            head is not None
            and not self._paused
            and self._cap.may_start(self)
            and self._limiter.delay(head.images) == 0
        )

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
            self._cap.away.discard(job.job_id)
            self._freed()
            self._cap.give()
