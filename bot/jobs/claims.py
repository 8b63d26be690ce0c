"""The shared queue's SQL: the fair order kept in the jobs rows, claimed by any process.

On PostgreSQL every process that runs jobs takes them from one queue in the database, so the
fair order (:mod:`bot.jobs.fairqueue`: round-robin between guilds, then between members of a
guild; direct messages as one pseudo-guild per user; each lane its own queue) must live in the
rows themselves, and every operation must stay O(log n) in the queue's length: a claim is one
index lookup, never a sort of the whole queue.

How: each queued job carries a static key, ``fair_round`` = ``round << SEQ_BITS | seq``, and
a claim takes the lowest ``(fair_round, id)`` of its lane by the index (lane, status,
fair_round, id), ``FOR UPDATE SKIP LOCKED`` so concurrent claimers never take one job twice and
never wait for each other. ``round`` is the guild's turn: its queued jobs on a lane hold
consecutive rounds, one job per round. ``seq`` orders the guilds within a round: the id of the
job with which the guild joined the lane's rotation (it had nothing queued there), so the
guilds of a round come in the order they joined, as in the rotation of the fair queue.

- :func:`enqueue`, inside the admission transaction (which holds the guild's lock row, so the
  enqueues of one guild never run side by side): the lane's head round ``h`` (the lowest key,
  one index lookup). A guild with nothing queued on the lane joins with ``(h, its job's id)``:
  behind every guild in the current round, so its first job waits at most one turn per other
  guild, however long their backlogs are. A guild with jobs queued gets one more round, and its
  queued jobs are re-keyed for member fairness: its rounds are handed out again in member
  round-robin order (members in the order of their next job as it stands, each member's jobs
  oldest first, a new member last), updating only the rows whose key changed. That is
  O(the guild's queue) per enqueue, bounded by ``[jobs] max_queued_per_guild``; the guild's
  queued jobs are found by the index (status, guild_id, user_id), not through its ledger.
  Rows an admission re-keys stay locked until it commits: a claim meanwhile skips them and may
  take the next guild's job first (one turn early, never a job twice).
- :func:`claim`: one statement, ``UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP LOCKED LIMIT 1)
  RETURNING``: the job is running, with its worker and lease (the database's clock), or None.
- :func:`places`: jobs ahead of each queued job, counted by the same index and only up to
  ``POSITION_CAP + 1`` (O(min(position, cap)) each).

One difference from :class:`bot.jobs.fairqueue.FairQueue`, deliberate: there a guild that joins
goes behind the guilds already served in the current pass too (the rotation is a cycle that
moves with every turn); here it goes to the end of the current round. Matching the moving
cycle exactly would need keys that fit between any two (relabelling the rotation). Both give a
new guild's first job at most one turn per other guild, and while no guild joins after the
first claim (claims and jobs added to waiting guilds interleaved in any way) the two orders
are the same (the tests compare them). A job that leaves the queue other than by a claim
(cancelled) leaves a gap in its guild's rounds: the guild's next enqueue closes it, or
:func:`withdrawn` right away.
Jobs queued without a key (before migration 0007, or copied from SQLite) get one from
:func:`enqueue_unkeyed`, which a process that runs jobs calls at start.

Nothing here knows Discord or the runner: only jobs rows, in the caller's sessions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta

from sqlalchemy import ColumnElement, and_, bindparam, func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import DEFAULT_BACKEND
from bot.db.engine import Sessions
from bot.db.models import Job, JobStatus, utcnow
from bot.jobs.dispatcher import POSITION_CAP
from bot.quotas.counters import DM_GUILD
from bot.quotas.ledger import lock_guild

__all__ = [
    "SEQ_BITS",
    "claim",
    "claim_any",
    "enqueue",
    "enqueue_unkeyed",
    "fair_key",
    "lane_of",
    "places",
    "queue_length",
    "queued_counts",
    "withdrawn",
]

#: Low bits of ``fair_round`` that hold the guild's place within a round (a job id: jobs.id is
#: a 32-bit integer, so ids fit); the bits above hold the round (2**32 of them).
SEQ_BITS = 31
_SEQ_MASK = (1 << SEQ_BITS) - 1

_JOBS = Job.metadata.tables[Job.__tablename__]


def fair_key(round_: int, seq: int) -> int:
    """The ``fair_round`` of the job in turn ``round_`` of the guild that joined with ``seq``."""
    return (round_ << SEQ_BITS) | (seq & _SEQ_MASK)


def _round(key: int) -> int:
    return key >> SEQ_BITS


def _seq(key: int) -> int:
    return key & _SEQ_MASK


def lane_of(job: Job) -> str:
    """The queue a job waits in: its backend's ("default" = ``[provider]``)."""
    return job.backend or DEFAULT_BACKEND


def _queued_on(lane: str) -> ColumnElement[bool]:
    return and_(Job.lane == lane, Job.status == JobStatus.QUEUED)


def _same_guild(guild_id: int | None, user_id: int | None) -> ColumnElement[bool]:
    """The jobs that take turns with each other: a guild's, or one user's direct messages."""
    if guild_id is None:
        return and_(Job.guild_id.is_(None), Job.user_id == user_id)
    return Job.guild_id == guild_id


async def enqueue(session: AsyncSession, job: Job) -> None:
    """Put the flushed, queued ``job`` in its lane's fair order (sets ``lane``, ``fair_round``)
    and re-key its guild's other queued jobs for member round-robin.

    Called by the admission transaction after ``session.flush()``, under the guild's lock."""
    lane = lane_of(job)
    job.lane = lane
    head = await session.scalar(
        select(Job.fair_round)
        .where(_queued_on(lane), Job.fair_round.is_not(None), Job.id != job.id)
        .order_by(Job.fair_round, Job.id)
        .limit(1)
    )
    head_round = _round(head) if head is not None else 0
    await _rekey(session, lane, job.guild_id, job.user_id, head_round, job)


async def enqueue_unkeyed(sessions: Sessions) -> int:
    """Give a place in the fair order to every queued job that has none (queued before
    migration 0007, or copied from a SQLite database), oldest first, each under its guild's
    lock as an admission would; how many. Without it such jobs would never be claimed."""
    async with sessions() as session:
        waiting = (
            await session.execute(
                select(Job.id)
                .where(Job.status == JobStatus.QUEUED, Job.fair_round.is_(None))
                .order_by(Job.queued_at, Job.id)
            )
        ).scalars()
        job_ids = list(waiting)
    keyed = 0
    for job_id in job_ids:
        async with sessions() as session, session.begin():
            job = await session.get(Job, job_id)
            if job is None or job.status is not JobStatus.QUEUED or job.fair_round is not None:
                continue
            await lock_guild(session, job.guild_id or DM_GUILD)
            await session.refresh(job)
            if job.status is JobStatus.QUEUED and job.fair_round is None:
                await enqueue(session, job)
                keyed += 1
    return keyed


async def withdrawn(session: AsyncSession, job: Job) -> None:
    """Close the gap ``job`` left in its guild's rounds (it left the queue, cancelled), so the
    guild's next job does not wait a round longer. Optional: the next enqueue does it too."""
    if job.lane is None:
        return
    head = await session.scalar(
        select(Job.fair_round)
        .where(_queued_on(job.lane), Job.fair_round.is_not(None))
        .order_by(Job.fair_round, Job.id)
        .limit(1)
    )
    if head is not None:
        await _rekey(session, job.lane, job.guild_id, job.user_id, _round(head), None)


async def _rekey(
    session: AsyncSession,
    lane: str,
    guild_id: int | None,
    user_id: int | None,
    head_round: int,
    new: Job | None,
) -> None:
    """Hand the guild's rounds out again in member round-robin order, ``new`` (if any) last of
    its member's jobs; write only the keys that changed."""
    # The guild's queued jobs on every lane (at most its queue cap), the lane picked here: the
    # condition on the lane would lead the planner to the lane's index, a scan of its queue.
    found = await session.execute(
        select(Job.id, Job.user_id, Job.lane, Job.fair_round).where(
            Job.status == JobStatus.QUEUED, _same_guild(guild_id, user_id)
        )
    )
    rows = sorted(
        (
            row
            for row in found
            if row.lane == lane and row.fair_round is not None and (new is None or row.id != new.id)
        ),
        key=lambda row: (row.fair_round, row.id),
    )
    if not rows:
        if new is not None:
            new.fair_round = fair_key(head_round, new.id)
        return
    first: int = rows[0].fair_round
    seq = _seq(first)
    # A gap (a job cancelled) must not keep the guild more than one round behind the head.
    start = min(_round(first), head_round + 1)
    members: dict[int | None, list[int]] = {}
    for row in rows:
        members.setdefault(row.user_id, []).append(row.id)
    if new is not None:
        members.setdefault(new.user_id, []).append(new.id)
    keys = {row.id: row.fair_round for row in rows}
    changed = []
    for offset, job_id in enumerate(_round_robin(list(members.values()))):
        key = fair_key(start + offset, seq)
        if new is not None and job_id == new.id:
            new.fair_round = key
        elif keys[job_id] != key:
            changed.append({"job": job_id, "key": key})
    if changed:
        jobs = _JOBS.c
        await session.execute(
            update(_JOBS)
            .where(jobs.id == bindparam("job"), jobs.status == JobStatus.QUEUED)
            .values(fair_round=bindparam("key")),
            changed,
        )


def _round_robin(queues: list[list[int]]) -> list[int]:
    """One item from each list in turn, while any has items left."""
    order: list[int] = []
    depth = 0
    while True:
        turn = [queue[depth] for queue in queues if depth < len(queue)]
        if not turn:
            return order
        order += turn
        depth += 1


async def claim(sessions: Sessions, lane: str, worker_id: str, lease_seconds: float) -> Job | None:
    """Take the next job of ``lane`` in fair order for ``worker_id``: it is running, held
    until ``lease_seconds`` from now (the database's clock), or None when nothing waits.

    One statement; locked rows (another claimer's, an admission re-keying its guild) are
    skipped, never waited for, so claimers do not queue behind each other."""
    async with sessions() as session, session.begin():
        connection = await session.connection()
        lease = timedelta(seconds=lease_seconds)
        lease_until = (
            func.now() + lease if connection.dialect.name == "postgresql" else utcnow() + lease
        )
        next_job = (
            select(Job.id)
            .where(_queued_on(lane))
            .order_by(Job.fair_round, Job.id)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        result = await session.execute(
            update(Job)
            .where(Job.id == next_job, Job.status == JobStatus.QUEUED)
            .values(
                status=JobStatus.RUNNING,
                worker_id=worker_id,
                lease_until=lease_until,
                started_at=utcnow(),
            )
            .returning(Job)
            .execution_options(synchronize_session=False)
        )
        return result.scalars().first()


async def claim_any(
    sessions: Sessions, lanes: Sequence[str], worker_id: str, lease_seconds: float
) -> Job | None:
    """The next job of the first of ``lanes`` (in the order given) that has one waiting."""
    for lane in lanes:
        job = await claim(sessions, lane, worker_id, lease_seconds)
        if job is not None:
            return job
    return None


async def places(sessions: Sessions, job_ids: Iterable[int]) -> dict[int, int]:
    """How many queued jobs of its lane come before each of ``job_ids`` that is queued (0: it
    is next), counted only up to ``POSITION_CAP + 1``; a job not queued any more is missing."""
    wanted = sorted(set(job_ids))
    if not wanted:
        return {}
    found: dict[int, int] = {}
    async with sessions() as session:
        rows = (
            await session.execute(
                select(Job.id, Job.lane, Job.fair_round).where(
                    Job.id.in_(wanted),
                    Job.status == JobStatus.QUEUED,
                    Job.lane.is_not(None),
                    Job.fair_round.is_not(None),
                )
            )
        ).all()
        for row in rows:
            ahead = (
                select(Job.id)
                .where(
                    _queued_on(row.lane),
                    tuple_(Job.fair_round, Job.id) < tuple_(row.fair_round, row.id),
                )
                .limit(POSITION_CAP + 1)
                .subquery()
            )
            found[row.id] = await session.scalar(select(func.count()).select_from(ahead)) or 0
    return found


async def queued_counts(sessions: Sessions, guild_id: int | None, user_id: int) -> tuple[int, int]:
    """(the member's queued jobs, the guild's) over every lane, for the queue caps; direct
    messages (``guild_id`` None) count the user's own for both."""
    async with sessions() as session:
        queued = Job.status == JobStatus.QUEUED
        if guild_id is None:
            mine = await session.scalar(
                select(func.count()).where(queued, _same_guild(None, user_id))
            )
            return mine or 0, mine or 0
        row = (
            await session.execute(
                select(func.count(), func.count().filter(Job.user_id == user_id)).where(
                    queued, Job.guild_id == guild_id
                )
            )
        ).one()
        return row[1] or 0, row[0] or 0


async def queue_length(sessions: Sessions, lane: str | None = None) -> int:
    """Queued jobs on ``lane``, or on every lane (metrics, ``check``)."""
    async with sessions() as session:
        condition = _queued_on(lane) if lane is not None else Job.status == JobStatus.QUEUED
        return await session.scalar(select(func.count()).where(condition)) or 0
