"""STAND-IN for the `claims` slice's module (the shared queue's SQL): the same interface, in
plain id order instead of the fair rounds. The real module replaces this file at merge.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import and_, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import DEFAULT_BACKEND
from bot.db.engine import Sessions
from bot.db.models import Job, JobStatus, utcnow
from bot.jobs.dispatcher import POSITION_CAP


async def enqueue(session: AsyncSession, job: Job) -> None:
    job.lane = job.backend or DEFAULT_BACKEND
    job.fair_round = job.id


async def claim(sessions: Sessions, lane: str, worker_id: str, lease_seconds: float) -> Job | None:
    async with sessions() as session, session.begin():
        job = (
            await session.execute(
                select(Job)
                .where(Job.lane == lane, Job.status == JobStatus.QUEUED)
                .order_by(Job.fair_round, Job.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
        ).scalar_one_or_none()
        if job is None:
            return None
        now = utcnow()
        job.status = JobStatus.RUNNING
        job.worker_id = worker_id
        job.lease_until = now + timedelta(seconds=lease_seconds)
        job.started_at = now
    return job


async def places(sessions: Sessions, job_ids: Iterable[int]) -> dict[int, int]:
    wanted = list(job_ids)
    if not wanted:
        return {}
    found: dict[int, int] = {}
    async with sessions() as session:
        rows = (
            await session.execute(
                select(Job.id, Job.lane, Job.fair_round).where(
                    Job.id.in_(wanted), Job.status == JobStatus.QUEUED
                )
            )
        ).all()
        for job_id, lane, fair_round in rows:
            ahead = (
                select(Job.id)
                .where(
                    Job.lane == lane,
                    Job.status == JobStatus.QUEUED,
                    tuple_(Job.fair_round, Job.id) < tuple_(fair_round, job_id),
                )
                .limit(POSITION_CAP + 1)
                .subquery()
            )
            found[job_id] = int(await session.scalar(select(func.count()).select_from(ahead)) or 0)
    return found


async def queued_counts(sessions: Sessions, guild_id: int | None, user_id: int) -> tuple[int, int]:
    queued = Job.status == JobStatus.QUEUED
    if guild_id is None:
        member = guild = and_(queued, Job.guild_id.is_(None), Job.user_id == user_id)
    else:
        guild = and_(queued, Job.guild_id == guild_id)
        member = and_(guild, Job.user_id == user_id)
    async with sessions() as session:
        mine = await session.scalar(select(func.count()).where(member))
        theirs = await session.scalar(select(func.count()).where(guild))
    return int(mine or 0), int(theirs or 0)


async def queue_length(sessions: Sessions, lane: str | None = None) -> int:
    statement = select(func.count()).where(Job.status == JobStatus.QUEUED)
    if lane is not None:
        statement = statement.where(Job.lane == lane)
    async with sessions() as session:
        count = await session.scalar(statement)
    return int(count or 0)
