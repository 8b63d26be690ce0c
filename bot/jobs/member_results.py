"""A member's posted results in one server, newest first: a page at a time (``/history``), or
the few that match what they type (``/show``'s suggestions).

Only read here: the job rows are written by :mod:`bot.jobs.store`. A result counts while it is
posted (delivered, with its message recorded); one the member deleted is no longer listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, String, cast, func, select

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


#: Discord shows at most this many autocomplete suggestions.
SUGGESTIONS = 25


def _posted(guild_id: int, user_id: int) -> ColumnElement[bool]:
    """The member's results in the server that are still posted (not deleted)."""
    return (
        (Job.guild_id == guild_id)
        & (Job.user_id == user_id)
        & (Job.status == JobStatus.DELIVERED)
        & Job.result_message_id.is_not(None)
    )


async def matching_results(
    sessions: Sessions, guild_id: int, user_id: int, typed: str, limit: int = SUGGESTIONS
) -> list[ResultLine]:
    """The member's newest results in the server that match ``typed``: digits (with or
    without a leading "#") match the start of a job id, other text any part of the prompt
    (case aside); nothing typed matches all."""
    typed = typed.strip().removeprefix("#").strip()
    condition = _posted(guild_id, user_id)
    if typed.isdigit():
        condition &= cast(Job.id, String).startswith(typed, autoescape=True)
    elif typed:
        condition &= Job.prompt.icontains(typed, autoescape=True)
    async with sessions() as session:
        rows = await session.execute(
            select(
                Job.id,
                # Only the start of a prompt is shown: up to 32,000 characters need not travel.
                func.substr(Job.prompt, 1, 200),
                Job.finished_at,
                Job.queued_at,
                Job.cost_micro_usd,
                Job.result_channel_id,
                Job.result_message_id,
            )
            .where(condition)
            .order_by(Job.id.desc())
            .limit(limit)
        )
        return [
            ResultLine(job_id, prompt or "", finished or queued, cost or 0, channel, message or 0)
            for job_id, prompt, finished, queued, cost, channel, message in rows.all()
        ]


async def member_results(
    sessions: Sessions, guild_id: int, user_id: int, page: int, per_page: int = PER_PAGE
) -> ResultsPage:
    """Page ``page`` (0-based, clamped to the last) of the member's results in the server."""
    posted = _posted(guild_id, user_id)
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
