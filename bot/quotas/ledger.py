"""Reservations and usage, read from the jobs table: the ledger every report comes from.

A job row *is* its reservation: while queued or running it counts its requested images and
estimated cost; when it succeeds they are replaced by what it delivered and really cost; when it
fails or is cancelled both drop to zero. The job store (``bot.jobs.store.admit``) inserts the
row in one transaction in which :func:`check` first takes the guild's lock (then the lock of
the operator's total caps) and checks every limit, so any number of concurrent requests at the
edge of a quota, in one guild or across many, admit exactly as many images as the quota allows.
Without the locks :func:`check` asks the same questions, so a request can be refused before
anything is spent on it. This module writes no job: it counts and decides.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import QuotaSettings
from bot.db.models import (
    GuildSettings,
    Installation,
    Job,
    MemberReset,
    RoleLimit,
)
from bot.quotas.policy import (
    ChannelNotAllowed,
    DirectMessagesOff,
    GuildBudget,
    GuildDailyLimit,
    GuildMonthlyLimit,
    Limits,
    MemberDailyLimit,
    Periods,
    TotalBudget,
    TotalDailyBudget,
    dm_limits,
    guild_limits,
    member_limit,
    periods,
    usd,
)
from bot.quotas.prices import MICRO

#: The lock row for direct messages, which have no guild.
DM_GUILD = 0


@dataclass(frozen=True)
class Usage:
    guild_today: int
    guild_month: int
    guild_spend_month: int
    member_today: int


async def lock_guild(session: AsyncSession, guild_id: int) -> GuildSettings:
    """Take the guild's write lock (creating its row on first use) and return the row."""
    for _ in range(2):
        result = await session.execute(
            update(GuildSettings)
            .where(GuildSettings.guild_id == guild_id)
            .values(lock_version=GuildSettings.lock_version + 1)
        )
        if result.rowcount:  # type: ignore[attr-defined]
            break
        try:
            async with session.begin_nested():
                await session.execute(
                    insert(GuildSettings).values(guild_id=guild_id, lock_version=1)
                )
            break
        except IntegrityError:
            continue  # created by a concurrent request: lock it with the update
    row = await session.get(GuildSettings, guild_id, populate_existing=True)
    assert row is not None
    return row


async def usage(
    session: AsyncSession, guild_id: int | None, user_id: int, period: Periods
) -> Usage:
    in_guild = Job.guild_id.is_(None) if guild_id is None else Job.guild_id == guild_id
    month = await session.execute(
        select(
            func.coalesce(func.sum(Job.n_charged), 0),
            func.coalesce(func.sum(Job.cost_micro_usd), 0),
        ).where(in_guild, Job.queued_at >= period.month_start)
    )
    guild_month, spend = month.one()
    today = await session.execute(
        select(func.coalesce(func.sum(Job.n_charged), 0)).where(
            in_guild, Job.queued_at >= period.day_start
        )
    )
    reset = await session.get(MemberReset, (guild_id or DM_GUILD, user_id))
    since = Job.queued_at >= period.day_start
    if reset is not None and _aware(reset.reset_at) >= period.day_start:
        since = Job.queued_at > _aware(reset.reset_at)  # what was used up to the reset is forgiven
    member = await session.execute(
        select(func.coalesce(func.sum(Job.n_charged), 0)).where(
            in_guild, Job.user_id == user_id, since
        )
    )
    return Usage(int(today.scalar_one()), int(guild_month), int(spend), int(member.scalar_one()))


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def limits_for(
    session: AsyncSession, quotas: QuotaSettings, guild_id: int | None, row: GuildSettings | None
) -> tuple[Limits, list[RoleLimit]]:
    if guild_id is None:
        return dm_limits(quotas), []
    rules = await session.execute(select(RoleLimit).where(RoleLimit.guild_id == guild_id))
    return guild_limits(quotas, row), list(rules.scalars())


async def check(
    session: AsyncSession,
    quotas: QuotaSettings,
    job: Job,
    role_ids: Iterable[int],
    now: datetime,
    *,
    locked: bool,
    parent_channel_id: int | None = None,
) -> None:
    """Raise the first limit ``job`` (its n and estimated cost) would break, in ``session``.

    ``locked``: take the guild's lock row and then the operator's total lock row first, always
    in that order (requests in one guild are serialized by the first, a burst across many
    guilds by the second), so the job store's insert in the same transaction cannot overdraw
    either limit. Without it this only reads: an early answer that may let through what the
    locked check then refuses.
    """
    assert job.user_id is not None
    if job.guild_id is None and not quotas.dm_enabled:
        raise DirectMessagesOff()
    guild_id = job.guild_id or DM_GUILD
    row = (
        await lock_guild(session, guild_id)
        if locked
        else await session.get(GuildSettings, guild_id)
    )
    await _check_guild(session, quotas, job, row, role_ids, parent_channel_id, now)
    if locked:
        await lock_total(session)
    await _check_total(session, quotas, job.cost_micro_usd, now)


async def _check_guild(
    session: AsyncSession,
    quotas: QuotaSettings,
    job: Job,
    row: GuildSettings | None,
    role_ids: Iterable[int],
    parent_channel_id: int | None,
    now: datetime,
) -> None:
    """Raise the first of the guild's (or the DM's) limits ``job`` would break."""
    assert job.user_id is not None
    limits, rules = await limits_for(session, quotas, job.guild_id, row)
    allowed = limits.allowed_channels
    parent = parent_channel_id if parent_channel_id is not None else job.parent_channel_id
    if allowed and job.channel_id not in allowed and parent not in allowed:
        raise ChannelNotAllowed(channels=limits.allowed_channels)
    period = periods(now, limits.timezone)
    used = await usage(session, job.guild_id, job.user_id, period)
    n, cost = job.n_requested, job.cost_micro_usd
    day, month = period.next_day, period.next_month
    if used.guild_today + n > limits.images_per_day:
        raise GuildDailyLimit(
            limit=limits.images_per_day,
            remaining=max(limits.images_per_day - used.guild_today, 0),
            n=n,
            resets=day,
        )
    if used.guild_month + n > limits.images_per_month:
        raise GuildMonthlyLimit(
            limit=limits.images_per_month,
            remaining=max(limits.images_per_month - used.guild_month, 0),
            n=n,
            resets=month,
        )
    if used.guild_spend_month + cost > limits.spend_per_month_micro:
        raise GuildBudget(
            limit=usd(limits.spend_per_month_micro),
            remaining=usd(limits.spend_per_month_micro - used.guild_spend_month),
            cost=usd(cost),
            resets=month,
        )
    personal = member_limit(limits, rules, role_ids)
    if personal is not None and used.member_today + n > personal:
        raise MemberDailyLimit(
            limit=personal,
            remaining=max(personal - used.member_today, 0),
            n=n,
            resets=day,
        )


#: The row of the installation table whose lock serializes the total spend caps.
TOTAL_LOCK = "total-spend-lock"


async def lock_total(session: AsyncSession) -> None:
    """Take the lock for the operator's total caps (one row for every guild and DM)."""
    for _ in range(2):
        result = await session.execute(
            update(Installation)
            .where(Installation.key == TOTAL_LOCK)
            .values(value=Installation.value)
        )
        if result.rowcount:  # type: ignore[attr-defined]
            return
        try:
            async with session.begin_nested():
                await session.execute(insert(Installation).values(key=TOTAL_LOCK, value=""))
            return
        except IntegrityError:
            continue  # created by a concurrent request: lock it with the update


async def total_spend(session: AsyncSession, since: datetime) -> int:
    """Micro-dollars of every job since ``since``, all guilds and DMs, reservations included."""
    result = await session.execute(
        select(func.coalesce(func.sum(Job.cost_micro_usd), 0)).where(Job.queued_at >= since)
    )
    return int(result.scalar_one())


async def _check_total(
    session: AsyncSession, quotas: QuotaSettings, cost: int, now: datetime
) -> None:
    """Raise TotalBudget when ``cost`` more would pass the operator's month or day ceiling."""
    period = periods(now, "UTC")
    month_cap = round(quotas.total_spend_per_month_usd * MICRO)
    if await total_spend(session, period.month_start) + cost > month_cap:
        raise TotalBudget(resets=period.next_month)
    day_cap = round(quotas.total_spend_per_day_usd * MICRO)
    if day_cap and await total_spend(session, period.day_start) + cost > day_cap:
        raise TotalDailyBudget(resets=period.next_day)
