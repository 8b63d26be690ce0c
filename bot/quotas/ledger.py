"""Reservations and usage: the quota decision, and the ledger every report comes from.

A job row *is* its reservation: while queued or running it counts its requested images and
estimated cost; when it succeeds they are replaced by what it delivered and really cost; when it
fails or is cancelled both drop to zero. The job store (``bot.jobs.store.admit``) inserts the
row in one transaction in which :func:`check` first takes the guild's lock (then the lock of
the operator's total caps) and checks every limit, so any number of concurrent requests at the
edge of a quota, in one guild or across many, admit exactly as many images as the quota allows.
Without the locks :func:`check` asks the same questions, so a request can be refused before
anything is spent on it. The decision reads the usage counters (:mod:`bot.quotas.counters`,
kept by the job store in the same transactions as the rows), not sums over the month's rows;
the reports (:func:`usage`) still sum the rows. This module writes no job: it counts and
decides.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from bot.config import QuotaSettings
from bot.db.guilds import lock_guild, lock_guild_to_read_sync
from bot.db.models import (
    GuildSettings,
    Installation,
    Job,
    MemberReset,
    RoleLimit,
)
from bot.quotas import counters
from bot.quotas.counters import DM_GUILD, Counts, Keys
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

__all__ = ["DM_GUILD", "Reservation", "Usage", "check", "lock_guild", "usage"]


@dataclass(frozen=True)
class Usage:
    guild_today: int
    guild_month: int
    guild_spend_month: int
    member_today: int


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
    return await session.run_sync(limits_for_sync, quotas, guild_id, row)


def limits_for_sync(
    session: Session, quotas: QuotaSettings, guild_id: int | None, row: GuildSettings | None
) -> tuple[Limits, list[RoleLimit]]:
    if guild_id is None:
        return dm_limits(quotas), []
    rules = session.connection().execute(_ROLE_LIMITS, {"limited_guild": guild_id}).mappings()
    return guild_limits(quotas, row), [RoleLimit(**rule) for rule in rules]


#: Built once, as every statement of the admission (building one costs more than running it);
#: on the table: the rules are read, never changed here, so copies attached to no session do.
_ROLES = RoleLimit.metadata.tables[RoleLimit.__tablename__]
_ROLE_LIMITS = select(_ROLES).where(_ROLES.c.guild_id == bindparam("limited_guild"))


@dataclass(frozen=True)
class Reservation:
    """What :func:`check` read: the job's counters, and which of them exist (for the write)."""

    keys: Keys
    found: dict[counters.Key, Counts]


async def check(
    session: AsyncSession,
    quotas: QuotaSettings,
    job: Job,
    role_ids: Iterable[int],
    now: datetime,
    *,
    locked: bool,
    parent_channel_id: int | None = None,
) -> Reservation:
    """:func:`check_sync` in an async session."""
    return await session.run_sync(
        check_sync, quotas, job, role_ids, now, locked=locked, parent_channel_id=parent_channel_id
    )


def check_sync(
    session: Session,
    quotas: QuotaSettings,
    job: Job,
    role_ids: Iterable[int],
    now: datetime,
    *,
    locked: bool,
    parent_channel_id: int | None = None,
) -> Reservation:
    """Raise the first limit ``job`` (its n and estimated cost) would break, in ``session``.

    ``locked``: take the guild's lock row and then the operator's total lock row first, always
    in that order (requests in one guild are serialized by the first, a burst across many
    guilds by the second), so the job store's insert in the same transaction cannot overdraw
    either limit. Without it this only reads: an early answer that may let through what the
    locked check then refuses. Returns what the store needs to count the job in.
    """
    assert job.user_id is not None
    if job.guild_id is None and not quotas.dm_enabled:
        raise DirectMessagesOff()
    guild_id = job.guild_id or DM_GUILD
    row = (
        lock_guild_to_read_sync(session, guild_id)
        if locked
        else session.get(GuildSettings, guild_id)
    )
    limits, rules = limits_for_sync(session, quotas, job.guild_id, row)
    allowed = limits.allowed_channels
    parent = parent_channel_id if parent_channel_id is not None else job.parent_channel_id
    if allowed and job.channel_id not in allowed and parent not in allowed:
        raise ChannelNotAllowed(channels=limits.allowed_channels)
    if locked:
        lock_total_sync(session)
    keys = counters.keys_for(job.guild_id, job.user_id, now, limits.timezone)
    found = counters.read_sync(session, keys.all())
    used = {key: found.get(key, Counts()) for key in keys.all()}
    _check_guild(job, limits, rules, role_ids, keys, used, periods(now, limits.timezone))
    _check_total(quotas, job.cost_micro_usd, keys, used, now)
    return Reservation(keys, found)


def _check_guild(
    job: Job,
    limits: Limits,
    rules: list[RoleLimit],
    role_ids: Iterable[int],
    keys: Keys,
    used: dict[counters.Key, Counts],
    period: Periods,
) -> None:
    """Raise the first of the guild's (or the DM's) limits ``job`` would break."""
    guild_today = used[keys.guild_day].images
    guild_month = used[keys.guild_month].images
    guild_spend_month = used[keys.guild_month].spend_micro
    member_today = used[keys.member_day].images
    n, cost = job.n_requested, job.cost_micro_usd
    day, month = period.next_day, period.next_month
    if guild_today + n > limits.images_per_day:
        raise GuildDailyLimit(
            limit=limits.images_per_day,
            remaining=max(limits.images_per_day - guild_today, 0),
            n=n,
            resets=day,
        )
    if guild_month + n > limits.images_per_month:
        raise GuildMonthlyLimit(
            limit=limits.images_per_month,
            remaining=max(limits.images_per_month - guild_month, 0),
            n=n,
            resets=month,
        )
    if guild_spend_month + cost > limits.spend_per_month_micro:
        raise GuildBudget(
            limit=usd(limits.spend_per_month_micro),
            remaining=usd(limits.spend_per_month_micro - guild_spend_month),
            cost=usd(cost),
            resets=month,
        )
    personal = member_limit(limits, rules, role_ids)
    if personal is not None and member_today + n > personal:
        raise MemberDailyLimit(
            limit=personal,
            remaining=max(personal - member_today, 0),
            n=n,
            resets=day,
        )


#: The row of the installation table whose lock serializes the total spend caps.
TOTAL_LOCK = "total-spend-lock"


def lock_total_sync(session: Session) -> None:
    """Take the lock for the operator's total caps (one row for every guild and DM).

    SQLite has one writer at a time: the guild's lock taken before already holds the whole
    database, so the row is only locked where writers run side by side (PostgreSQL)."""
    if session.get_bind().dialect.name == "sqlite":
        return
    for _ in range(2):
        result = session.execute(
            update(Installation)
            .where(Installation.key == TOTAL_LOCK)
            .values(value=Installation.value)
        )
        if result.rowcount:  # type: ignore[attr-defined]
            return
        try:
            with session.begin_nested():
                session.execute(insert(Installation).values(key=TOTAL_LOCK, value=""))
            return
        except IntegrityError:
            continue  # created by a concurrent request: lock it with the update


def _check_total(
    quotas: QuotaSettings,
    cost: int,
    keys: Keys,
    used: dict[counters.Key, Counts],
    now: datetime,
) -> None:
    """Raise TotalBudget when ``cost`` more would pass the operator's month or day ceiling."""
    period = periods(now, "UTC")
    month_cap = round(quotas.total_spend_per_month_usd * MICRO)
    if used[keys.total_month].spend_micro + cost > month_cap:
        raise TotalBudget(resets=period.next_month)
    day_cap = round(quotas.total_spend_per_day_usd * MICRO)
    if day_cap and used[keys.total_day].spend_micro + cost > day_cap:
        raise TotalDailyBudget(resets=period.next_day)
