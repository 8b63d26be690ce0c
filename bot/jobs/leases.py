"""Heartbeats and leases: which processes sharing the database are alive, and what becomes
of the jobs of one that died.

PostgreSQL only (bot.jobs.processes.is_shared). A process running a job holds its claim
(``jobs.worker_id``, ``jobs.lease_until``) for ``[jobs] lease_seconds``. Every quarter of a
lease each process, in one transaction, writes its heartbeat (its own ``processes`` row) and
renews the leases of the jobs it runs: a live worker's long job never expires. A process that
stops renewing (SIGKILL, machine lost, cut off from the database) loses its jobs when their
lease runs out: the reaper of any other process marks them interrupted, possibly billed, as a
restart does on SQLite (bot.jobs.runner), and tells each requester once (Retry button). A
clean stop does the same for its own jobs at once, instead of leaving them for the lease; a
job it claimed and never sent it may give back to the queue instead (:func:`release_claim`).

The reaper runs in every process, gateways too: a worker alone cannot reap its own jobs once
dead. Each job is interrupted in its own short transaction (bot.jobs.store.interrupt_claim),
the row locked: exactly one process wins it, and the ledger rows it touches are locked in the
order every other settlement locks them (a transaction releasing several jobs' counters in a
row could deadlock with admissions). Heartbeats and reaping run as separate tasks: telling
requesters (Discord REST, maybe slow) never delays a heartbeat.

Every time compared is the database's (``now()``), so machines with skewed clocks agree.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import ColumnElement, and_, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.engine import Sessions, finish_even_if_cancelled
from bot.db.models import Job, JobStatus, Process
from bot.jobs import orphans, store
from bot.jobs.processes import ProcessInfo

log = logging.getLogger(__name__)

#: Heartbeats (and reaper passes) per lease: a renewal can be late three times in a row.
BEATS_PER_LEASE = 4
#: Never more often than this (seconds), however short the lease.
MIN_INTERVAL = 1.0
#: A process row whose heartbeat is older than this many leases is deleted by the reaper.
STALE_LEASES = 10
#: Jobs one reaper pass interrupts at most (the next pass takes the rest).
REAP_BATCH = 200


class InterruptListener(Protocol):
    """Who tells requesters their job was interrupted (the runner's JobListener)."""

    async def job_interrupted(self, job: Job) -> None: ...

    async def job_post_interrupted(self, job: Job) -> None: ...


#: The runner's listener as it is when a job is reaped (set after the runner is built).
ListenerSource = Callable[[], InterruptListener | None]


def _no_listener() -> InterruptListener | None:
    return None


def shards_text(process: ProcessInfo) -> str | None:
    """How a process row names its shards: "0,1", or None (all, or a worker)."""
    if process.shard_ids is None:
        return None
    return ",".join(str(shard) for shard in process.shard_ids)


class Leases:
    """This process's heartbeat, the renewal of its jobs' leases, and the reaper."""

    def __init__(self, sessions: Sessions, process: ProcessInfo, lease_seconds: float) -> None:
        self._sessions = sessions
        self.process = process
        self.lease = timedelta(seconds=lease_seconds)
        #: Seconds between heartbeats, and between reaper passes.
        self.interval = max(MIN_INTERVAL, lease_seconds / BEATS_PER_LEASE)
        self._listener: ListenerSource = _no_listener
        self._tasks: list[asyncio.Task[None]] = []
        self._registered = False

    async def start(self, listener: ListenerSource = _no_listener) -> None:
        """Register this process (its row, before it claims anything), then beat and reap."""
        self._listener = listener
        await self.heartbeat_once()
        self._tasks = [
            asyncio.create_task(self._every_interval(self.heartbeat_once, "heartbeat")),
            asyncio.create_task(self._every_interval(self.reap_once, "reaper")),
        ]

    async def stop(self) -> None:
        """A clean stop, after the runner stopped its jobs: those still marked running here
        are interrupted now (their requesters told), and this process's row goes. Once."""
        tasks, self._tasks = self._tasks, []
        if not tasks:
            return
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await self._interrupt(Job.worker_id == self.process.id, "this process stopped")
            async with self._sessions() as session, session.begin():
                await session.execute(delete(Process).where(Process.id == self.process.id))
        except Exception:  # left to the others: its jobs after their lease, its row when stale
            log.exception("releasing this process's jobs and row at stop failed")

    async def heartbeat_once(self) -> int:
        """This process is alive, and keeps the jobs it runs: how many leases were renewed."""
        me = self.process.id
        async with self._sessions() as session, session.begin():
            beat = await session.execute(
                update(Process).where(Process.id == me).values(heartbeat_at=func.now())
            )
            if not beat.rowcount:  # type: ignore[attr-defined]
                if self._registered:
                    log.warning(
                        "this process's heartbeat was late by more than %d leases and its "
                        "row was deleted: registered again (its jobs may have been "
                        "interrupted by another process)",
                        STALE_LEASES,
                    )
                await session.execute(
                    insert(Process).values(
                        id=me,
                        role=self.process.role,
                        shards=shards_text(self.process),
                        host=socket.gethostname()[:255],
                        pid=os.getpid(),
                        started_at=func.now(),
                        heartbeat_at=func.now(),
                    )
                )
            renewed = await session.execute(
                update(Job)
                .where(Job.worker_id == me, Job.status == JobStatus.RUNNING)
                .values(lease_until=func.now() + self.lease)
                .execution_options(synchronize_session=False)
            )
        self._registered = True
        return int(renewed.rowcount)  # type: ignore[attr-defined]

    async def reap_once(self) -> list[Job]:
        """Interrupt the running jobs of other processes whose lease ran out, tell their
        requesters, and delete the rows of processes long dead: the jobs this pass won.

        Never this process's own: it still runs them (its renewal was late, the database
        slow); the others reap them if it stays cut off. A running row without a lease (copied
        from SQLite, say) belongs to no live process."""
        expired = and_(
            or_(Job.lease_until < func.now(), Job.lease_until.is_(None)),
            Job.worker_id.is_distinct_from(self.process.id),
        )
        reaped = await self._interrupt(expired, "its lease ran out")
        await self._orphaned_posts()
        async with self._sessions() as session, session.begin():
            await session.execute(
                delete(Process).where(Process.heartbeat_at < func.now() - STALE_LEASES * self.lease)
            )
        return reaped

    async def _interrupt(self, lost: ColumnElement[bool], why: str) -> list[Job]:
        async with self._sessions() as session:
            result = await session.execute(
                select(Job.id)
                .where(Job.status == JobStatus.RUNNING, lost)
                .order_by(Job.id)
                .limit(REAP_BATCH)
            )
            candidates: Sequence[int] = result.scalars().all()
        interrupted = []
        for job_id in candidates:
            job = await store.interrupt_claim(self._sessions, job_id, lost)
            if job is None:
                continue  # finished meanwhile, renewed, or won by another process
            interrupted.append(job)
            log.warning(
                "job %d was running on process %s and %s: interrupted; its estimate of "
                "%d micro-USD stays in the spend ledger as possibly billed",
                job.id,
                job.worker_id,
                why,
                job.cost_micro_usd,
                extra={"job_id": job.id, "guild_id": job.guild_id, "user_id": job.user_id},
            )
            await self._tell(job)
        return interrupted

    async def _orphaned_posts(self) -> list[Job]:
        """Results a dead process took the right to post and may not have posted (see
        bot.jobs.orphans): each requester told once, with a button to post it."""
        me = self.process.id
        told = []
        for job_id in await orphans.find_orphans(self._sessions, me, self.lease):
            job = await orphans.mark_orphan(self._sessions, job_id, me, self.lease)
            if job is None:
                continue  # another reaper won it
            told.append(job)
            log.warning(
                "job %d: its result was made but process %s stopped while posting it; "
                "the requester can post it with a button",
                job.id,
                job.delivery_owner,
                extra={"job_id": job.id, "guild_id": job.guild_id, "user_id": job.user_id},
            )
            await self._tell(job, post=True)
        return told

    async def _tell(self, job: Job, *, post: bool = False) -> None:
        listener = self._listener()
        if listener is None:
            return
        try:
            if post:
                await listener.job_post_interrupted(job)
            else:
                await listener.job_interrupted(job)
        except Exception:
            log.exception("job %d: reporting the interruption failed", job.id)

    async def _every_interval(self, work: Callable[[], Awaitable[object]], name: str) -> None:
        """``work`` every interval until cancelled; a failing database is said once, until a
        pass works again (a pass that runs is finished even when cancelled)."""
        failing = False
        while True:
            await asyncio.sleep(self.interval)
            try:
                await finish_even_if_cancelled(work())
            except Exception as exc:
                if not failing:
                    log.warning("%s failed (%s); trying again every %g s", name, exc, self.interval)
                failing = True
            else:
                if failing:
                    log.info("%s works again", name)
                failing = False


async def release_claim(session: AsyncSession, job_id: int, worker_id: str) -> bool:
    """Give back a job ``worker_id`` claimed and never sent (it stops before the request went
    out, say): queued again at its turn (its ``fair_round`` is kept), for any process.

    False, changing nothing, when the claim is not its own any more (reaped, finished) or a
    cancel was asked for it meanwhile: the caller finishes it as it would have. Runs in the
    caller's transaction; a waking NOTIFY, if wanted, is the caller's too."""
    result = await session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            Job.status == JobStatus.RUNNING,
            Job.worker_id == worker_id,
            Job.cancel_requested.is_not(True),
        )
        .values(status=JobStatus.QUEUED, worker_id=None, lease_until=None, started_at=None)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def live_processes(sessions: Sessions, within: timedelta) -> list[Process]:
    """The processes whose heartbeat is at most ``within`` old (database time), oldest first."""
    async with sessions() as session:
        result = await session.execute(
            select(Process)
            .where(Process.heartbeat_at >= func.now() - within)
            .order_by(Process.started_at, Process.id)
        )
        return list(result.scalars())


async def database_now(sessions: Sessions) -> datetime:
    """The database's clock: what heartbeats and leases are measured by."""
    async with sessions() as session:
        moment: datetime = (await session.execute(select(func.now()))).scalar_one()
        return moment
