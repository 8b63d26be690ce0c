"""Results whose posting was cut off: the shared queue's one window of "made, maybe not posted".

On PostgreSQL a result is posted at most once: its worker takes the right to post it
(``jobs.delivery_owner``) in the transaction that records it, posts, then records where. A worker
killed between the two leaves the job succeeded, its images stored, owned by a dead process:
it may be on Discord already, so nobody may post it on their own. The reaper of a live process
finds such a job once its owner's heartbeat is older than a lease, marks it
:data:`POST_INTERRUPTED` (so it is found once), and the requester is told, with a "Post result"
button: they see whether it arrived. A click takes the right to post (:func:`take_post`), once.

This module writes ``delivery_owner`` only for those jobs (:func:`bot.jobs.store.record_result`
takes it for every other).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import ColumnElement, and_, exists, func, select, update

from bot.db.engine import Sessions
from bot.db.models import Job, JobStatus, Process

#: The owner of a result whose posting was interrupted and whose requester was told.
POST_INTERRUPTED = "post-interrupted"
#: Orphaned posts one reaper pass handles at most (the next pass takes the rest).
ORPHAN_BATCH = 100


def _orphaned(me: str, lease: timedelta) -> list[ColumnElement[bool]]:
    alive = exists().where(
        Process.id == Job.delivery_owner, Process.heartbeat_at >= func.now() - lease
    )
    return [
        Job.status == JobStatus.SUCCEEDED,
        Job.delivery_owner.is_not(None),
        Job.delivery_owner.not_in([POST_INTERRUPTED, me]),
        Job.finished_at < func.now() - lease,
        ~alive,
    ]


async def find_orphans(sessions: Sessions, me: str, lease: timedelta) -> Sequence[int]:
    """Succeeded jobs whose posting process stopped beating a lease ago, oldest first."""
    async with sessions() as session:
        result = await session.execute(
            select(Job.id).where(and_(*_orphaned(me, lease))).order_by(Job.id).limit(ORPHAN_BATCH)
        )
        return result.scalars().all()


async def mark_orphan(sessions: Sessions, job_id: int, me: str, lease: timedelta) -> Job | None:
    """``job_id`` marked :data:`POST_INTERRUPTED` if it is still orphaned (the row locked: of
    reapers racing, one wins); the job, to tell its requester, else None."""
    async with sessions() as session, session.begin():
        result = await session.execute(
            select(Job)
            .where(Job.id == job_id, *_orphaned(me, lease))
            .with_for_update(skip_locked=True)
        )
        job = result.scalar_one_or_none()
        if job is None:
            return None
        job.delivery_owner = POST_INTERRUPTED
        return job


async def take_post(sessions: Sessions, job_id: int, owner: str) -> bool:
    """The right to post an interrupted result, for ``owner``: True for one caller only."""
    async with sessions() as session, session.begin():
        result = await session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.status == JobStatus.SUCCEEDED,
                Job.delivery_owner == POST_INTERRUPTED,
            )
            .values(delivery_owner=owner)
            .execution_options(synchronize_session=False)
        )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def give_back(sessions: Sessions, job_id: int, owner: str) -> None:
    """``owner`` could not post it after all (no route took it): the button works again."""
    async with sessions() as session, session.begin():
        await session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.status == JobStatus.SUCCEEDED,
                Job.delivery_owner == owner,
            )
            .values(delivery_owner=POST_INTERRUPTED)
            .execution_options(synchronize_session=False)
        )
