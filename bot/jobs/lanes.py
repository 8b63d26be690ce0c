"""One queue and dispatcher per backend, within one total: a GPU server's one-at-a-time queue
never holds up the jobs of an API that takes four at once, and the reverse.

Each backend (its ``lane``) has its own fair queue, concurrency (``concurrency``, else its kind's)
and rate limit (``images_per_minute``), so its jobs start the moment it can take one; a job's
position ("3 ahead") counts the jobs ahead of it on its own backend. ``[jobs] concurrency`` stays
the most jobs running at once over all of them (:class:`~bot.jobs.dispatcher.RunningCap`). With
one backend configured this is exactly the one dispatcher it wraps.

:class:`Lanes` answers what callers asked the one dispatcher (push, remove, places, running...),
each in O(backends) on top of the dispatcher's own cost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager

from bot.config import DEFAULT_BACKEND
from bot.jobs.dispatcher import Dispatcher, Place, RunningCap
from bot.jobs.fairqueue import QueuedJob
from bot.jobs.ratelimit import ImageRateLimiter

#: A lane's own limits: (jobs at once, its rate limiter).
LaneLimits = tuple[int, ImageRateLimiter]


class Lanes:
    def __init__(
        self,
        run: Callable[[QueuedJob], Awaitable[None]],
        *,
        concurrency: int,
        lanes: Mapping[str, LaneLimits],
    ) -> None:
        """``concurrency``: the most jobs running over every lane; ``lanes``: each backend's
        own limits ("default" among them)."""
        self.cap = RunningCap(concurrency)
        self.lanes = {
            name: Dispatcher(run, concurrency=min(jobs, concurrency), limiter=limiter, cap=self.cap)
            for name, (jobs, limiter) in lanes.items()
        }
        self._limiters = {name: limiter for name, (_, limiter) in lanes.items()}
        self.queue = LaneQueues(self)

    def lane(self, name: str) -> Dispatcher:
        """The dispatcher of the backend ``name`` (a backend no longer configured: the
        default's, which is where such a job runs)."""
        return self.lanes.get(name) or self.lanes[DEFAULT_BACKEND]

    def push(self, job: QueuedJob) -> None:
        self.lane(job.lane).push(job)

    def slot(self, job: QueuedJob, backend: str) -> AbstractAsyncContextManager[None]:
        """A slot on ``backend``'s lane for ``job`` while it asks that backend: nothing more on
        its own lane; one there when it failed over (a one-at-a-time GPU server runs one job,
        also counting those moved to it)."""
        lane = self.lane(backend)
        if lane is self.lane(job.lane):
            return contextlib.nullcontext()
        return lane.slot(job)

    def remove(self, job_id: int) -> bool:
        return any(lane.remove(job_id) for lane in self.lanes.values())

    def request_done(self, job_id: int) -> None:
        for lane in self.lanes.values():  # only the job's own holds it; the others ignore it
            lane.request_done(job_id)

    def request_unsent(self, job_id: int) -> None:
        """``job_id`` was refused before its request went out: its images never count."""
        for lane in self.lanes.values():
            lane.request_unsent(job_id)

    def rate_limited(self, backend: str, seconds: float) -> None:
        """``backend`` answered 429 asking to wait ``seconds``: its lane starts nothing until
        then (its dispatcher finds out at its next look: the pause only makes waits longer)."""
        limiter = self._limiters.get(backend)
        if limiter is not None:
            limiter.pause(seconds)

    def watch(self) -> asyncio.Event:
        event = asyncio.Event()
        for lane in self.lanes.values():
            lane.watch(event)
        return event

    def unwatch(self, event: asyncio.Event) -> None:
        for lane in self.lanes.values():
            lane.unwatch(event)

    def start(self) -> None:
        for lane in self.lanes.values():
            lane.start()

    def pause(self) -> None:
        for lane in self.lanes.values():
            lane.pause()

    async def wait_running(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        done = await asyncio.gather(*(lane.wait_running(timeout) for lane in self.lanes.values()))
        return all(done)

    async def stop(self) -> None:
        await asyncio.gather(*(lane.stop() for lane in self.lanes.values()))

    @property
    def alive(self) -> bool:
        return all(lane.alive for lane in self.lanes.values())

    @property
    def running(self) -> dict[int, QueuedJob]:
        if len(self.lanes) == 1:
            return next(iter(self.lanes.values())).running
        return {job_id: job for lane in self.lanes.values() for job_id, job in lane.running.items()}

    def starts_now(self, job_id: int) -> bool:
        return any(lane.starts_now(job_id) for lane in self.lanes.values())

    def places(self, job_ids: Iterable[int]) -> dict[int, Place]:
        """Each job's place on its own backend (see :meth:`Dispatcher.places`)."""
        wanted = list(job_ids)
        places: dict[int, Place] = {}
        for lane in self.lanes.values():
            places.update(lane.places(wanted))
        return places


class LaneQueues:
    """Every lane's queue, read as one (the queue caps count a member's jobs on all of them)."""

    def __init__(self, lanes: Lanes) -> None:
        self._lanes = lanes

    def __len__(self) -> int:
        return sum(len(lane.queue) for lane in self._lanes.lanes.values())

    def __contains__(self, job_id: object) -> bool:
        return any(job_id in lane.queue for lane in self._lanes.lanes.values())

    def push(self, job: QueuedJob) -> None:
        """Queued without waking the dispatcher (a restart fills the queues before it starts)."""
        self._lanes.lane(job.lane).queue.push(job)

    def count(self, *, guild: Hashable, user: Hashable | None = None) -> int:
        return sum(lane.queue.count(guild=guild, user=user) for lane in self._lanes.lanes.values())


class LanePositions:
    """The lanes as the status messages read them: places awaited, as the shared queue's must
    be (bot.jobs.shared), and computed at once, in memory."""

    def __init__(self, lanes: Lanes) -> None:
        self._lanes = lanes

    @property
    def running(self) -> dict[int, QueuedJob]:
        return self._lanes.running

    async def places(self, job_ids: Iterable[int]) -> dict[int, Place]:
        return self._lanes.places(job_ids)

    def watch(self) -> asyncio.Event:
        return self._lanes.watch()

    def unwatch(self, event: asyncio.Event) -> None:
        self._lanes.unwatch(event)
