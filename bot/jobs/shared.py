"""The job queue shared by every process on one PostgreSQL database.

On SQLite one process keeps the queue in memory (bot.jobs.lanes). On PostgreSQL any number of
processes admit jobs (gateway shards) and run them (workers), so the queue is the jobs table
itself (bot.jobs.claims): a job is admitted into its lane's fair order in the admission's
transaction, which also sends ``NOTIFY imagebot_jobs`` (bot.jobs.notify), and a process with a
free slot claims the next one (``FOR UPDATE SKIP LOCKED``: no job is claimed twice). The claim
is the "running" mark and carries the process's lease (renewed by bot.jobs.leases).

:class:`SharedLanes` is the dispatcher of one process: per lane (backend) it claims while the
lane's concurrency and ``[jobs] concurrency`` leave a slot free here, taking the lanes in turn.
It sleeps until a job is queued (LISTEN), one finishes here, or ``[jobs] poll_seconds`` pass
(the fallback for a lost notification); a lane found empty is not asked again before one of
those. The rate limit is asked right before each request to a backend (:meth:`slot`), so it
is one limit for every process (bot.jobs.sharedlimit).

Cancel works from any process: a queued job is cancelled by one conditional write that a claim
cannot also win (the row lock decides); a running one is flagged (``cancel_requested``) and its
process told (``NOTIFY imagebot_cancel``, and its poll), which stops it as it would a local
cancel. Results are posted at most once: the result and the right to post it
(``delivery_owner``) are written in one transaction before anything is posted (see
:meth:`SharedLanes.deliver`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterable, Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import Float, cast, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import DEFAULT_BACKEND, JobsSettings, Settings
from bot.db import Sessions
from bot.db.engine import Transactions, finish_even_if_cancelled
from bot.db.models import Intake, Job, JobStatus, utcnow
from bot.generation import ImageOrder
from bot.jobs import claims, notify, store
from bot.jobs.dispatcher import DEFAULT_RUN_SECONDS, POSITION_CAP, Place
from bot.jobs.fairqueue import QueuedJob
from bot.jobs.intake import IntakeRecovery, IntakeRequest
from bot.jobs.ratelimit import ImageRateLimiter
from bot.jobs.sharedlimit import SharedRateLimiter, longest_request
from bot.jobs.spool import DATABASE_ERRORS, Posted
from bot.providers import GeneratedImage, ImageResult
from bot.providers.registry import BackendSet
from bot.quotas.admission import check_queue_caps

log = logging.getLogger(__name__)

#: Seconds the process where Cancel was pressed waits for the one running the job to stop it
#: (Discord wants the button answered within 3 s).
CANCEL_WAIT_SECONDS = 2.0
#: Seconds the queue's figures for estimated waits (jobs running, average run) are kept.
FIGURES_SECONDS = 5.0
#: Pauses (seconds) between attempts to record a result while the database fails.
RECORD_DELAYS = (0.25, 0.5, 1.0, 2.0)
#: Namespace of the advisory locks that keep two processes from finishing one intake.
INTAKE_LOCKS = 0x1D7A
#: Namespace of the advisory lock each process holds while it is connected (its id's hash).
PROCESS_LOCKS = 0x1D7B

RunClaimed = Callable[[QueuedJob, Job], Awaitable[None]]
Post = Callable[[Job, list[GeneratedImage]], Awaitable[Posted]]


class SharedLanes:
    def __init__(
        self,
        run: RunClaimed,
        sessions: Sessions,
        url: str,
        *,
        process_id: str,
        lanes: Mapping[str, int],
        jobs: JobsSettings,
        limiter: SharedRateLimiter,
        cancel_here: Callable[[int], bool],
        images_per_minute: int | None = None,
    ) -> None:
        """``lanes``: each backend's concurrency (in this process); ``jobs.concurrency`` the
        most over all of them; ``jobs`` also has the queue caps, the lease and the poll.
        ``cancel_here(job_id)``: stop a job running here (False: it is not making images here
        yet). ``images_per_minute``: the default backend's, for estimated waits."""
        self._run = run
        self._sessions = sessions
        #: PostgreSQL's: the hot path's transactions on the async sessions.
        self._transactions = Transactions(sessions)
        self._url = url
        self.process_id = process_id
        self._jobs = jobs
        self._lanes = {name: min(limit, jobs.concurrency) for name, limit in lanes.items()}
        self._order = deque(self._lanes)
        self._concurrency = jobs.concurrency
        self._lease = jobs.lease_seconds
        self.poll_seconds = jobs.poll_seconds
        #: The rate limit every process shares (a provider's 429 pauses it for all).
        self.limiter = limiter
        self._cancel_here = cancel_here
        self._rate = images_per_minute
        #: Jobs claimed here and not finished, and how many per lane.
        self.running: dict[int, QueuedJob] = {}
        self._lane_running: Counter[str] = Counter()
        #: Lanes found empty since they were last woken: not asked again before.
        self._empty: set[str] = set()
        #: Cancel asked for jobs claimed here that are not making images yet.
        self._cancel_pending: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        #: Set when a lane's slot here is given back (a failed-over job waits for one).
        self._slot_freed = asyncio.Event()
        self._watchers: weakref.WeakSet[asyncio.Event] = weakref.WeakSet()
        self._loop_task: asyncio.Task[None] | None = None
        self._intakes_task: asyncio.Task[None] | None = None
        self._dispatching = False
        self._paused = False
        self._listener: notify.Listener | None = None
        #: (when read, jobs running over every process, their average run in seconds).
        self._figures: tuple[float, int, float] = (-FIGURES_SECONDS, 0, DEFAULT_RUN_SECONDS)
        #: Jobs queued over every process, as the last poll counted them (the metrics).
        self.queue_depth = 0

    @classmethod
    def for_backends(
        cls,
        run: RunClaimed,
        sessions: Sessions,
        settings: Settings,
        backends: BackendSet,
        process_id: str,
        cancel_here: Callable[[int], bool],
        limiter: ImageRateLimiter | None = None,
    ) -> SharedLanes:
        """The lanes of every configured backend, with the rate limit they share
        (``limiter``: tests' own limit and window for the default backend instead)."""
        shared = SharedRateLimiter.for_backends(sessions, backends.settings)
        if limiter is not None:
            shared = SharedRateLimiter(
                sessions,
                {DEFAULT_BACKEND: limiter.per_minute},
                max_in_flight=longest_request(backends.settings[DEFAULT_BACKEND]),
                window=limiter.window,
            )
        return cls(
            run,
            sessions,
            settings.database.url,
            process_id=process_id,
            lanes={name: backends.concurrency(name) for name in backends.names()},
            jobs=settings.jobs,
            limiter=shared,
            cancel_here=cancel_here,
            images_per_minute=backends.settings[DEFAULT_BACKEND].images_per_minute,
        )

    # --- admission -----------------------------------------------------------------------------

    async def enqueue(self, session: AsyncSession, job: Job) -> None:
        """In the admission's transaction: the queue caps checked (QueueFull), the job put in
        its lane's fair order, the workers woken.

        The caps count the jobs queued by every process, exactly: the admission holds the
        ledger's lock rows (bot.quotas.ledger), so no other admission counts meanwhile."""
        check_queue_caps(self._jobs, *await _queued_counts(session, job))
        await claims.enqueue(session, job)
        await notify.notify(session, notify.JOBS, job.lane or "default")

    async def check_caps(
        self, guild_id: int | None, user_id: int, admitting: tuple[int, int]
    ) -> None:
        """The queue caps, read without a lock before anything is downloaded, with the
        requests this process is admitting (the admission's transaction decides: enqueue)."""
        member, guild = await claims.queued_counts(self._sessions, guild_id, user_id)
        check_queue_caps(self._jobs, member + admitting[0], guild + admitting[1])

    # --- positions -----------------------------------------------------------------------------

    async def places(self, job_ids: Iterable[int]) -> dict[int, Place]:
        """Each queued job's place over every process (a job not queued has none).

        The wait is estimated from the position, the jobs running now over every process (the
        work the queue is served at while it is not empty) and their average run time: an
        estimate, as the dispatcher's is."""
        ahead = await claims.places(self._sessions, job_ids)
        if not ahead:
            return {}
        _, parallel, average = await self._queue_figures()
        places = {}
        for job_id, before in ahead.items():
            position = min(before + 1, POSITION_CAP + 1)
            wait = average * ((position - 1) // max(parallel, 1) + 0.5)
            if self._rate:
                wait = max(wait, (position - 1) * 60.0 / self._rate)
            places[job_id] = Place(position, wait)
        return places

    def starts_here(self, lane: str | None) -> bool:
        """Whether this process would claim the next job of ``lane`` at once (a slot free)."""
        lane = lane or DEFAULT_BACKEND
        return (
            self._dispatching
            and not self._paused
            and len(self.running) < self._concurrency
            and self._lane_running[lane] < self._lanes.get(lane, 0)
        )

    async def _queue_figures(self) -> tuple[float, int, float]:
        read_at = self._figures[0]
        if time.monotonic() - read_at < FIGURES_SECONDS:
            return self._figures
        recent = (
            select((Job.finished_at - Job.started_at).label("took"))
            .where(Job.status == JobStatus.DELIVERED, Job.started_at.is_not(None))
            .order_by(Job.id.desc())
            .limit(50)
            .subquery()
        )
        async with self._sessions() as session:
            running = await session.scalar(
                select(func.count()).where(Job.status == JobStatus.RUNNING)
            )
            average = await session.scalar(
                select(func.avg(cast(func.extract("epoch", recent.c.took), Float)))
            )
        self._figures = (
            time.monotonic(),
            int(running or 0),
            float(average) if average else DEFAULT_RUN_SECONDS,
        )
        return self._figures

    def watch(self) -> asyncio.Event:
        """An event set whenever positions may have changed (a job queued or claimed here, a
        wake-up from another process, every poll)."""
        event = asyncio.Event()
        self._watchers.add(event)
        return event

    def unwatch(self, event: asyncio.Event) -> None:
        self._watchers.discard(event)

    def _changed(self) -> None:
        for event in self._watchers:
            event.set()

    # --- cancel --------------------------------------------------------------------------------

    async def cancel(
        self,
        job_id: int,
        *,
        here: Callable[[int], Awaitable[bool]],
        stoppable: Callable[[Job], bool],
    ) -> bool:
        """Cancel ``job_id`` wherever it is: making images here (``here``: the runner's own
        cancel), queued, or running on another process whose backend can stop it
        (``stoppable``). False when it cannot be (started on a backend that bills it anyway,
        finished, or not stopped in time)."""
        if await here(job_id):
            return True
        if await self.cancel_queued(job_id):
            log.info("job %d cancelled", job_id, extra={"job_id": job_id})
            return True
        job = await store.get_job(self._sessions, job_id)  # claimed meanwhile, maybe here
        if job is None or job.status is not JobStatus.RUNNING or not stoppable(job):
            return False
        if job.worker_id == self.process_id:
            return await here(job_id)
        return await self.cancel_elsewhere(job_id)

    async def cancel_queued(self, job_id: int) -> bool:
        """Cancel ``job_id`` if it is still queued: won against a claim, or lost."""
        job = await store.finish_without_images(
            self._sessions, job_id, JobStatus.CANCELLED, only_if=JobStatus.QUEUED
        )
        if job is not None:
            self._changed()
        return job is not None

    async def cancel_elsewhere(self, job_id: int) -> bool:
        """Ask the process running ``job_id`` to stop it; True once it is recorded cancelled
        (within :data:`CANCEL_WAIT_SECONDS`), False when it finished otherwise or too late."""
        async with self._sessions() as session, session.begin():
            asked = await session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == JobStatus.RUNNING)
                .values(cancel_requested=True)
            )
            if not asked.rowcount:  # type: ignore[attr-defined]
                return False
            await notify.notify(session, notify.CANCEL, str(job_id))
        deadline = time.monotonic() + CANCEL_WAIT_SECONDS
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            async with self._sessions() as session:
                status = await session.scalar(select(Job.status).where(Job.id == job_id))
            if status is JobStatus.CANCELLED:
                return True
            if status is not JobStatus.RUNNING:
                return False
        log.info("job %d: not stopped in %g s", job_id, CANCEL_WAIT_SECONDS)
        return False

    def take_cancel(self, job_id: int) -> bool:
        """Whether Cancel was asked for ``job_id`` before it made images here (once)."""
        if job_id in self._cancel_pending:
            self._cancel_pending.discard(job_id)
            return True
        return False

    def _cancel_asked(self, payload: str) -> None:
        with contextlib.suppress(ValueError):
            job_id = int(payload)
            if job_id in self.running and not self._cancel_here(job_id):
                self._cancel_pending.add(job_id)

    async def _cancels_missed(self) -> None:
        """The poll's look for Cancel asked of jobs here while a notification was lost."""
        if not self.running:
            return
        async with self._sessions() as session:
            asked = await session.scalars(
                select(Job.id).where(
                    Job.worker_id == self.process_id,
                    Job.status == JobStatus.RUNNING,
                    Job.cancel_requested.is_(True),
                )
            )
            for job_id in asked:
                self._cancel_asked(str(job_id))

    # --- running -------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def slot(self, job: QueuedJob, backend: str) -> AsyncIterator[None]:
        """Held while ``backend`` is asked for ``job``: the rate limit every process shares,
        and, for a job failed over from its own lane, one of ``backend``'s slots here (a
        one-at-a-time GPU server runs one job of this process, also counting those moved
        to it), as the in-memory lanes do."""
        moved = backend != job.lane and backend in self._lanes
        if moved:
            while self._lane_running[backend] >= self._lanes[backend]:
                self._slot_freed.clear()
                await self._slot_freed.wait()
            self._lane_running[backend] += 1
        try:
            grant = await self.limiter.acquire(backend, job.images, job.job_id)
            try:
                yield
            finally:
                await finish_even_if_cancelled(self.limiter.answered(grant))
        finally:
            if moved:
                self._lane_running[backend] -= 1
                self._slot_freed.set()
                self._wake.set()

    def request_done(self, job_id: int) -> None:
        """The dispatcher's call: the shared limit is answered when :meth:`slot` ends."""

    async def deliver(
        self,
        job: Job,
        result: ImageResult,
        sent: ImageOrder | None,
        reserved: tuple[int, int],
        *,
        post: Post,
        recorded: Callable[[Job], Awaitable[None]],
    ) -> None:
        """Record ``result`` and take the right to post it in one transaction, then post it,
        then record where: a process that restarts (or another) never posts it again.

        ``job`` is settled already (:func:`store.settle`). Only a process that still holds
        the job's claim may take that right: after its lease ran out the job is interrupted
        (its requester told, with a Retry button) and the result is not posted. A process
        killed after taking it and before recording the messages leaves the job succeeded,
        its images stored and its ``delivery_owner`` set: it may have been posted, so it is
        never posted again by anyone (at most once)."""
        owned = await _retrying(
            job.id,
            lambda: store.record_result(
                self._transactions,
                job,
                result.images,
                [],
                sent,
                reserved=reserved,
                owner=self.process_id,
            ),
        )
        if not owned:
            log.error(
                "job %d: its result came after its claim ended (interrupted meanwhile); not posted",
                job.id,
                extra={"job_id": job.id},
            )
            return
        posted = await post(job, list(result.images))
        if not posted:
            return  # no route took it: the listener posts it again later, from the row
        job.status = JobStatus.DELIVERED
        job.result_channel_id, job.result_message_id = posted[0]
        await _retrying(
            job.id,
            lambda: store.record_delivery(self._sessions, job.id, posted, clear_token=True),
        )
        await recorded(job)

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self, *, dispatch: bool, intakes: IntakeRecovery | None = None) -> None:
        """Listen for wake-ups; with ``dispatch`` (a process that runs jobs) claim and run.

        ``intakes`` finishes the acknowledged requests killed processes left: now, and every
        lease from now on (a process killed while the others run leaves some that no start
        would finish soon); only those older than a lease (see :func:`recover_intakes`)."""
        self._dispatching = dispatch
        if dispatch:
            # Queued before the shared queue existed (migration 0007) or copied from SQLite:
            # without a place in the fair order they would never be claimed.
            keyed = await claims.enqueue_unkeyed(self._sessions)
            if keyed:
                log.info("%d queued jobs got their place in the shared queue", keyed)
        handlers: dict[str, Callable[[str], None]] = {notify.JOBS: self._queued_on}
        if dispatch:
            handlers[notify.CANCEL] = self._cancel_asked
        self._listener = notify.Listener(
            self._url,
            handlers,
            on_reconnect=self.wake_all,
            alive_lock=(PROCESS_LOCKS, self.process_id),
        )
        await self._listener.start()
        if self._loop_task is None:
            self._loop_task = asyncio.create_task(self._loop(), name="shared-dispatcher")
        if intakes is not None:
            await self._recover_intakes(intakes)
            self._intakes_task = asyncio.create_task(
                self._recover_intakes_forever(intakes), name="intakes"
            )

    async def _recover_intakes(self, intakes: IntakeRecovery) -> None:
        try:
            await recover_intakes(
                self._sessions, intakes, timedelta(seconds=self._lease), self.process_id
            )
        except DATABASE_ERRORS as error:
            log.warning("finishing left-over requests failed (%s)", type(error).__name__)

    async def _recover_intakes_forever(self, intakes: IntakeRecovery) -> None:
        while True:
            await asyncio.sleep(self._lease)
            await self._recover_intakes(intakes)

    def wake_all(self) -> None:
        self._empty.clear()
        self._wake.set()
        self._changed()

    def _queued_on(self, lane: str) -> None:
        self._empty.discard(lane)
        self._wake.set()
        self._changed()

    def pause(self) -> None:
        self._paused = True

    async def wait_running(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        tasks = list(self._tasks)
        if not tasks:
            return True
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        return not pending

    async def stop(self) -> None:
        """Stop claiming and cancel what still runs (its lease runs out: see bot.jobs.leases)."""
        self._paused = True
        for task in (self._loop_task, self._intakes_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._listener is not None:
            await self._listener.close()

    @property
    def alive(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done()

    async def wait_idle(self) -> None:
        """Until no job is queued or running in any process (tests): the database is asked
        every 50 ms, there being nothing to wait on across processes."""
        active = Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING])
        while True:
            async with self._sessions() as session:
                count = await session.scalar(select(func.count()).where(active))
            if not count and not self.running:
                return
            await asyncio.sleep(0.05)

    async def _loop(self) -> None:
        """Claim when woken; poll every ``poll_seconds`` however often it is woken (a busy
        worker is woken all the time, and the poll is what finds a lost notification)."""
        polled = time.monotonic()
        while True:
            due = polled + self.poll_seconds - time.monotonic()
            # asyncio.timeout, not wait_for: in 3.11 wait_for can swallow a cancel (stop hangs)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(due, 0.0)):
                    await self._wake.wait()
            self._wake.clear()
            if time.monotonic() - polled >= self.poll_seconds:
                polled = time.monotonic()
                await self._poll()
            if self._dispatching:
                try:
                    await self._fill()
                except DATABASE_ERRORS as error:
                    log.warning("claiming jobs failed (%s); again at the next poll", error)

    async def _poll(self) -> None:
        """Whatever a lost notification would have said: every lane may have jobs, positions
        may have moved, a Cancel may be waiting for a job here; and the queue's length."""
        self._empty.clear()
        self._changed()
        with contextlib.suppress(*DATABASE_ERRORS):
            await self._cancels_missed()
            self.queue_depth = await claims.queue_length(self._sessions)

    async def _fill(self) -> None:
        """Claim jobs while this process has slots free, one lane after the other."""
        claimed = True
        while claimed and not self._paused:
            claimed = False
            for _ in range(len(self._order)):
                lane = self._order[0]
                self._order.rotate(-1)
                if len(self.running) >= self._concurrency:
                    return
                if lane in self._empty or self._lane_running[lane] >= self._lanes[lane]:
                    continue
                job = await claims.claim(self._sessions, lane, self.process_id, self._lease)
                if job is None:
                    self._empty.add(lane)
                    continue
                claimed = True
                self._start(job, lane)

    def _start(self, job: Job, lane: str) -> None:
        queued = QueuedJob(job.id, _key(job), job.user_id, job.n_requested, lane)
        self.running[job.id] = queued
        self._lane_running[lane] += 1
        task = asyncio.create_task(self._execute(queued, job), name=f"job-{job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._changed()

    async def _execute(self, queued: QueuedJob, job: Job) -> None:
        try:
            await self._run(queued, job)
        except Exception:
            log.exception("job %d: the runner failed", job.id)
        finally:
            self.running.pop(job.id, None)
            self._cancel_pending.discard(job.id)
            self._lane_running[queued.lane] -= 1
            self._slot_freed.set()
            self._wake.set()  # a slot is free here
            self._changed()


async def recover_intakes(
    sessions: Sessions, recovery: IntakeRecovery, older_than: timedelta, me: str = ""
) -> int:
    """Finish the acknowledged requests a killed process left, each by one process only.

    An intake whose process (its ``owner``) is alive is left to it; one without an owner (or
    whose owner cannot be told) only once older than ``older_than``: a live process's would
    be a job by then. Each taken is held under an advisory lock (on a connection of its own,
    released if this process dies) while it is finished, so two processes starting together
    do not both finish it; and its job's admission deletes it or fails (store.IntakeTaken),
    so even a live process that was slower than ``older_than`` makes no second job."""
    since = utcnow() - older_than
    intakes = []
    async with sessions() as session:
        for intake in await session.scalars(select(Intake).order_by(Intake.id)):
            owner = _owner_of(intake)
            if owner is None:
                if intake.interaction_at < since:
                    intakes.append(intake)
            elif owner != me and not await notify.is_alive(session, PROCESS_LOCKS, owner):
                intakes.append(intake)
    finished = 0
    engine = sessions.kw["bind"]
    for intake in intakes:
        # A connection of its own, kept while the intake is finished: the lock is its.
        async with engine.connect() as lock:
            taken = await lock.scalar(select(func.pg_try_advisory_lock(INTAKE_LOCKS, intake.id)))
            await lock.commit()  # a session-level lock: it outlives the transaction
            if not taken:
                continue  # another process is finishing it
            try:
                async with sessions() as session:
                    still = await session.scalar(select(Intake.id).where(Intake.id == intake.id))
                if still is not None:
                    await recovery.intake_pending(intake)
                    finished += 1
            except Exception:
                log.exception("finishing the acknowledged request %d failed", intake.id)
            finally:
                await lock.execute(select(func.pg_advisory_unlock(INTAKE_LOCKS, intake.id)))
                await lock.commit()
    return finished


def _owner_of(intake: Intake) -> str | None:
    try:
        return IntakeRequest.from_json(intake.request).owner
    except (ValueError, TypeError, KeyError):
        return None


async def _queued_counts(session: AsyncSession, job: Job) -> tuple[int, int]:
    """The member's and the guild's queued jobs but ``job`` (a DM: the user's own, twice)."""
    others = (Job.status == JobStatus.QUEUED) & (Job.id != job.id)
    if job.guild_id is None:
        guild = others & Job.guild_id.is_(None) & (Job.user_id == job.user_id)
    else:
        guild = others & (Job.guild_id == job.guild_id)
    member = guild & (Job.user_id == job.user_id)
    counted = select(func.count().filter(member), func.count().filter(guild)).where(guild)
    mine, theirs = (await session.execute(counted)).one()
    return int(mine), int(theirs)


async def _retrying(job_id: int, write: Callable[[], Awaitable[Any]]) -> Any:
    """``write`` again after a few short pauses while the database fails; False when it
    still fails (logged)."""
    for delay in (*RECORD_DELAYS, None):
        try:
            return await write()
        except DATABASE_ERRORS as error:
            if delay is None:
                log.error(
                    "job %d: recording failed (%s)",
                    job_id,
                    type(error).__name__,
                    extra={"job_id": job_id},
                )
                return False
            await asyncio.sleep(delay)
    return False


def _key(job: Job) -> Hashable:
    return job.guild_id if job.guild_id is not None else ("dm", job.user_id)
