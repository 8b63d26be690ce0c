"""A member's posted results in one server, newest first, a page at a time (``/history``).

Only read here: the job rows are written by :mod:`bot.jobs.store`. A result counts while it is
posted (delivered, with its message recorded); one the member deleted is no longer listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from bot.db import Sessions
from bot.db.models import Job, JobStatus

#: Results per page: ten lines stay well within one message.
PER_PAGE = 10


@dataclass(frozen=True)
class ResultLine:
    job_id: int
    prompt: str
    made_at: datetime
    cost_micro_usd: int
    channel_id: int | None
    message_id: int


@dataclass(frozen=True)
class ResultsPage:
    lines: list[ResultLine]
    #: 0-based; ``pages`` is at least 1.
    page: int
    pages: int


async def member_results(
    sessions: Sessions, guild_id: int, user_id: int, page: int, per_page: int = PER_PAGE
) -> ResultsPage:
    """Page ``page`` (0-based, clamped to the last) of the member's results in the server."""
    posted = (
        (Job.guild_id == guild_id)
        & (Job.user_id == user_id)
        & (Job.status == JobStatus.DELIVERED)
        & Job.result_message_id.is_not(None)
    )
    async with sessions() as session:
        total = await session.scalar(select(func.count()).select_from(Job).where(posted)) or 0
        pages = max(1, -(-total // per_page))
        page = min(max(page, 0), pages - 1)
        rows = await session.execute(
            select(
                Job.id,
                Job.prompt,
                Job.finished_at,
                Job.queued_at,
                Job.cost_micro_usd,
                Job.result_channel_id,
                Job.result_message_id,
            )
            .where(posted)
            .order_by(Job.id.desc())
            .offset(page * per_page)
            .limit(per_page)
        )
        lines = [
            ResultLine(job_id, prompt or "", finished or queued, cost or 0, channel, message or 0)
            for job_id, prompt, finished, queued, cost, channel, message in rows.all()
        ]
    return ResultsPage(lines, page, pages)
