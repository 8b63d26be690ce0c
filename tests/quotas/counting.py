"""What the usage counters must always say: the ledger's own sums (the reports' numbers)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db import Job
from bot.quotas import counters, ledger
from bot.quotas.counters import Counts
from bot.quotas.policy import periods


async def counted(
    session: AsyncSession, guild: int | None, user: int, now: datetime, timezone: str = "UTC"
) -> tuple[int, int, int, int, int, int]:
    """Guild today, guild month, guild spend this month, member today, total spend this UTC
    month and today, as the counters say."""
    keys = counters.keys_for(guild, user, now, timezone)
    found = await counters.read(session, keys.all())
    use = {key: found.get(key, Counts()) for key in keys.all()}
    return (
        use[keys.guild_day].images,
        use[keys.guild_month].images,
        use[keys.guild_month].spend_micro,
        use[keys.member_day].images,
        use[keys.total_month].spend_micro,
        use[keys.total_day].spend_micro,
    )


async def summed(
    session: AsyncSession, guild: int | None, user: int, now: datetime, timezone: str = "UTC"
) -> tuple[int, int, int, int, int, int]:
    """The same six numbers summed over the ledger's rows, as the quotas once did."""
    used = await ledger.usage(session, guild, user, periods(now, timezone))
    utc = periods(now, "UTC")
    totals = []
    for since, until in ((utc.month_start, utc.next_month), (utc.day_start, utc.next_day)):
        total = await session.execute(
            select(func.coalesce(func.sum(Job.cost_micro_usd), 0)).where(
                Job.queued_at >= since, Job.queued_at < until
            )
        )
        totals.append(int(total.scalar_one()))
    return (
        used.guild_today,
        used.guild_month,
        used.guild_spend_month,
        used.member_today,
        totals[0],
        totals[1],
    )
