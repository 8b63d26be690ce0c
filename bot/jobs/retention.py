"""Stored data has a lifecycle: images and interaction tokens go, the ledger stays.

A job keeps images only while something may still need them: its uploads as sent (Redo, Remix
and Retry send them again) and results not yet posted. Failed and cancelled jobs drop theirs at
once (see :mod:`bot.jobs.store`), a deleted result with it; everything else finished goes after
``[storage] retention_days``. Jobs that are queued, running or made but not yet posted keep
theirs: they are the work itself. Interaction tokens are useless after Discord's 15 minutes and
are cleared then. The jobs rows (the usage ledger) are never deleted here.

The bot prunes every hour; ``python -m bot db prune`` does it on demand. Each pass hands
SQLite's free pages (of pruned images, and of results dropped once posted) back to the file
system.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select

from bot.db.engine import Storage, finish_even_if_cancelled, give_back_space
from bot.db.models import Job, JobImage, JobStatus, utcnow
from bot.jobs import store

log = logging.getLogger(__name__)

#: How often the bot prunes.
PRUNE_INTERVAL_SECONDS = 3600.0
#: Discord accepts an interaction token for 15 minutes (DESIGN.md §4).
TOKEN_LIFETIME = timedelta(minutes=15)
#: Jobs pruned per transaction: short transactions keep the bot's own writes flowing.
BATCH = 100

#: Nothing can run these again: their images go at once, whatever their age.
_DONE_FOR_GOOD = (JobStatus.FAILED, JobStatus.CANCELLED)
#: Finished, and kept for their buttons (Redo, Remix, Retry) until the retention ends.
_KEPT_FOR_RETENTION = (JobStatus.DELIVERED, JobStatus.INTERRUPTED)


@dataclass(frozen=True)
class Pruned:
    """What one pass removed."""

    jobs: int = 0
    images: int = 0
    bytes: int = 0
    tokens: int = 0

    def __str__(self) -> str:
        return (
            f"pruned {self.images} stored images ({self.bytes / 1e6:.1f} MB) of {self.jobs} jobs; "
            f"cleared {self.tokens} expired interaction tokens"
        )


async def prune(storage: Storage, retention: timedelta, *, now: datetime | None = None) -> Pruned:
    """Delete the stored images nothing needs any more, clear expired tokens, give space back."""
    now = now or utcnow()
    cutoff = now - retention
    expired = or_(
        Job.status.in_(_DONE_FOR_GOOD),
        and_(Job.status.in_(_KEPT_FOR_RETENTION), Job.finished_at < cutoff),
    )
    jobs = images = size = 0
    while True:
        async with storage.sessions() as session, session.begin():
            found = await session.execute(
                select(Job.id, func.count(JobImage.id), func.sum(func.length(JobImage.data)))
                .join(JobImage)
                .where(expired)
                .group_by(Job.id)
                .limit(BATCH)
            )
            batch = found.all()
            for job_id, count, length in batch:
                job = await session.get(Job, job_id)
                if job is not None and await store.drop_images(session, job):
                    jobs, images, size = jobs + 1, images + count, size + int(length or 0)
        if len(batch) < BATCH:
            break
    tokens = await clear_expired_tokens(storage, now)
    # Also the pages of results dropped when they were posted; instant when nothing is free.
    await give_back_space(storage.engine)
    return Pruned(jobs, images, size, tokens)


async def clear_expired_tokens(storage: Storage, now: datetime) -> int:
    """Forget every interaction token older than Discord accepts; how many there were."""
    return await store.clear_tokens_before(storage.sessions, now - TOKEN_LIFETIME)


async def prune_every_hour(
    storage: Storage, retention_days: int, interval: float = PRUNE_INTERVAL_SECONDS
) -> None:
    """The bot's pruning: a pass at start, then every ``interval`` seconds, until cancelled."""
    while True:
        try:
            pruned = await finish_even_if_cancelled(prune(storage, timedelta(days=retention_days)))
            if pruned.images or pruned.tokens:
                log.info("retention: %s", pruned)
        except Exception:
            log.exception("retention: pruning failed; trying again in %.0f s", interval)
        await asyncio.sleep(interval)
