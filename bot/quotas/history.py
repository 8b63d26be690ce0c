"""Day-by-day usage of a guild (or one member of it) for the charts, from the jobs ledger.

Days are the guild's local days, as the limits count them, so a chart's bar for today is the
number ``/usage`` calls "today". Rows are bucketed here rather than in SQL because SQLite and
PostgreSQL bucket dates in a time zone differently; the query reads only four small columns of
at most ``days`` days of rows. A bar counts what happened to the images asked for: made ones
(as the limits count them), reserved ones still waiting or running, and the ones asked for in
requests that failed, were cancelled or were interrupted (which the limits don't count).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select

from bot.charts import DayUsage
from bot.db import Sessions
from bot.db.models import Job, JobStatus, utcnow
from bot.quotas.policy import periods, zone
from bot.quotas.reports import OUTCOMES

#: How many days the charts show (today included).
CHART_DAYS = 30


def local_days(today: date, days: int) -> list[date]:
    return [today - timedelta(days=offset) for offset in range(days - 1, -1, -1)]


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def images_of(status: JobStatus, requested: int, charged: int) -> int:
    """The images a job stands for in its outcome's bar (see the module's docstring)."""
    outcome = OUTCOMES[status]
    return charged if outcome in ("done", "pending") else requested


async def daily_usage(
    sessions: Sessions,
    guild_id: int | None,
    timezone: str,
    *,
    user_id: int | None = None,
    now: datetime | None = None,
    days: int = CHART_DAYS,
) -> list[DayUsage]:
    """The last ``days`` local days up to today, oldest first; days without jobs are zeros.

    ``guild_id`` None is the direct messages; ``user_id`` narrows it to one member.
    """
    tz = zone(timezone)
    period = periods(now or utcnow(), timezone)
    today = period.day_start.astimezone(tz).date()
    calendar = local_days(today, days)
    first = datetime.combine(calendar[0], datetime.min.time(), tzinfo=tz).astimezone(UTC)
    where = [
        Job.guild_id.is_(None) if guild_id is None else Job.guild_id == guild_id,
        Job.queued_at >= first,
        Job.queued_at < period.next_day,
    ]
    if user_id is not None:
        where.append(Job.user_id == user_id)
    async with sessions() as session:
        rows = await session.execute(
            select(
                Job.queued_at, Job.status, Job.n_requested, Job.n_charged, Job.cost_micro_usd
            ).where(*where)
        )
        jobs = rows.all()
    images: dict[date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    spend: dict[date, int] = defaultdict(int)
    for queued_at, status, requested, charged, cost in jobs:
        day = _aware(queued_at).astimezone(tz).date()
        job_status = JobStatus(status)
        images[day][OUTCOMES[job_status]] += images_of(job_status, requested, charged)
        spend[day] += int(cost)
    return [DayUsage(day, dict(images.get(day, {})), spend.get(day, 0)) for day in calendar]
