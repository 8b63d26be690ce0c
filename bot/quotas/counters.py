"""Usage counters: the running totals the quotas check, written with the job rows they count.

The ledger (the jobs table) stays the record every report reads; summing a guild's month of it
under the write lock grew with its size (90 ms at 100,000 rows, every submit). These rows hold
the same sums per period (see :class:`bot.db.models.UsageCounter`), so a reservation is one
read and one write however long the history. Each change of a job's charge is one call here,
made by :mod:`bot.jobs.store` in the transaction that changes the row: the reservation
(:func:`add`, at admission) and every settlement (:func:`settle`: success, failure, cancel,
interruption, possibly billed), as the difference between the row's charge after and before.
So counters and ledger change together or not at all.

A job counts in the periods it was queued in, in the guild's time zone, as the ledger's sums
count it; a settlement the next day corrects the day it was reserved in. A member's day reset
(``/quota reset member``) zeroes their counter; jobs reserved before it no longer change it.
A new time zone regroups the guild's month (:func:`rebuild_guild`). Plain SQLAlchemy (an
update, and an insert in a savepoint when a counter is new), so it runs on SQLite and
PostgreSQL alike.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    ColumnElement,
    Executable,
    Update,
    and_,
    bindparam,
    delete,
    insert,
    select,
    tuple_,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from bot.db.models import GuildSettings, Job, MemberReset, UsageCounter
from bot.quotas.policy import periods, zone

#: Direct messages have no guild: they count (and lock) as this one.
DM_GUILD = 0
GUILD, MEMBER, TOTAL = "guild", "member", "total"


@dataclass(frozen=True, slots=True)
class Key:
    scope: str
    guild_id: int
    user_id: int
    period: str


@dataclass(frozen=True, slots=True)
class Counts:
    images: int = 0
    spend_micro: int = 0


@dataclass(frozen=True, slots=True)
class Keys:
    """The counters one job at one moment counts in."""

    guild_day: Key
    guild_month: Key
    member_day: Key
    total_day: Key
    total_month: Key

    def all(self) -> tuple[Key, ...]:
        return (self.guild_day, self.guild_month, self.member_day, self.total_day, self.total_month)


def keys_for(guild_id: int | None, user_id: int, moment: datetime, timezone: str) -> Keys:
    """The counters of a job in ``guild_id`` (None: a DM) by ``user_id`` queued at ``moment``.

    ``timezone`` is the guild's (UTC for DMs): its day and month are the periods."""
    guild = guild_id or DM_GUILD
    local = moment.astimezone(zone(timezone))
    utc = moment.astimezone(UTC)
    day, month = local.strftime("%Y-%m-%d"), local.strftime("%Y-%m")
    return Keys(
        guild_day=Key(GUILD, guild, 0, day),
        guild_month=Key(GUILD, guild, 0, month),
        member_day=Key(MEMBER, guild, user_id, day),
        total_day=Key(TOTAL, 0, 0, utc.strftime("%Y-%m-%d")),
        total_month=Key(TOTAL, 0, 0, utc.strftime("%Y-%m")),
    )


#: A counter's key as one row value; the statements on every admission are built once per
#: number of keys: building one per call (an OR of five ANDs) cost more CPU than running it.
#: On the table, not the mapped class, and run on the session's connection: Core statements
#: skip the ORM's execution layer.
_COUNTERS = UsageCounter.metadata.tables[UsageCounter.__tablename__]
_COLUMNS = _COUNTERS.c
_KEY = tuple_(_COLUMNS.scope, _COLUMNS.guild_id, _COLUMNS.user_id, _COLUMNS.period)


@functools.cache
def _read(count: int) -> Executable:
    """The counters of ``count`` keys (parameters ``scope0``, ``guild0``, ... ``period<n>``):
    one statement per count, with plain parameters (an expanding list is compiled again on
    every execution)."""
    return select(
        _COLUMNS.scope,
        _COLUMNS.guild_id,
        _COLUMNS.user_id,
        _COLUMNS.period,
        _COLUMNS.images,
        _COLUMNS.spend_micro,
    ).where(_keys_are(count))


@functools.cache
def _increment_statement(count: int) -> Update:
    return (
        update(_COUNTERS)
        .where(_keys_are(count))
        .values(
            images=_COLUMNS.images + bindparam("add_images"),
            spend_micro=_COLUMNS.spend_micro + bindparam("add_spend"),
        )
    )


def _keys_are(count: int) -> ColumnElement[bool]:
    return _KEY.in_(
        [
            tuple_(
                bindparam(f"scope{i}", type_=_COLUMNS.scope.type),
                bindparam(f"guild{i}", type_=_COLUMNS.guild_id.type),
                bindparam(f"user{i}", type_=_COLUMNS.user_id.type),
                bindparam(f"period{i}", type_=_COLUMNS.period.type),
            )
            for i in range(count)
        ]
    )


def _key_parameters(keys: Sequence[Key]) -> dict[str, object]:
    parameters: dict[str, object] = {}
    for i, key in enumerate(keys):
        parameters[f"scope{i}"] = key.scope
        parameters[f"guild{i}"] = key.guild_id
        parameters[f"user{i}"] = key.user_id
        parameters[f"period{i}"] = key.period
    return parameters


def _is(key: Key) -> ColumnElement[bool]:
    return and_(
        UsageCounter.scope == key.scope,
        UsageCounter.guild_id == key.guild_id,
        UsageCounter.user_id == key.user_id,
        UsageCounter.period == key.period,
    )


async def read(session: AsyncSession, keys: Iterable[Key]) -> dict[Key, Counts]:
    """The counters of ``keys`` that exist (a missing one is zero), in one query."""
    return await session.run_sync(read_sync, keys)


def read_sync(session: Session, keys: Iterable[Key]) -> dict[Key, Counts]:
    """:func:`read` in a synchronous session (the hot path's, bot.db.engine.Transactions)."""
    wanted = list(keys)
    result = session.connection().execute(_read(len(wanted)), _key_parameters(wanted))
    return {
        Key(scope, guild_id, user_id, period): Counts(int(images), int(spend))
        for scope, guild_id, user_id, period, images, spend in result.all()
    }


def add_sync(
    session: Session,
    keys: Sequence[Key],
    images: int,
    spend_micro: int,
    *,
    existing: Collection[Key] | None = None,
) -> None:
    """Add ``images`` and ``spend_micro`` (either may be negative) to every counter of ``keys``.

    ``existing``: the keys known to have a row (just read under the lock), so only the others
    are created; without it one update says how many exist and a read finds the missing."""
    if not keys or (images == 0 and spend_micro == 0):
        return
    present = list(keys) if existing is None else [key for key in keys if key in existing]
    updated = _increment(session, present, images, spend_micro) if present else 0
    if updated == len(keys):
        return
    found = existing if existing is not None else read_sync(session, keys)
    for key in keys:
        if key not in found:
            _create(session, key, images, spend_micro)


def _create(session: Session, key: Key, images: int, spend_micro: int) -> None:
    try:
        with session.begin_nested():
            session.connection().execute(
                _CREATE,
                {
                    "scope": key.scope,
                    "guild_id": key.guild_id,
                    "user_id": key.user_id,
                    "period": key.period,
                    "images": images,
                    "spend_micro": spend_micro,
                },
            )
    except IntegrityError:  # created by a concurrent transaction since: add to it
        _increment(session, [key], images, spend_micro)


_CREATE = insert(_COUNTERS)


def _increment(session: Session, keys: Sequence[Key], images: int, spend_micro: int) -> int:
    """Add to the existing counters of ``keys``; how many rows there were."""
    parameters = _key_parameters(keys)
    parameters.update(add_images=images, add_spend=spend_micro)
    result = session.connection().execute(_increment_statement(len(keys)), parameters)
    return int(result.rowcount)


async def settle(session: AsyncSession, job: Job, before: tuple[int, int]) -> None:
    """:func:`settle_sync` in an async session."""
    await session.run_sync(settle_sync, job, before)


def settle_sync(session: Session, job: Job, before: tuple[int, int]) -> None:
    """``job``'s charge changed from ``before`` (images, micro-dollars) to what its row says
    now: the difference goes to the counters of the periods it was reserved in."""
    images = job.n_charged - before[0]
    spend = job.cost_micro_usd - before[1]
    if (images == 0 and spend == 0) or job.user_id is None:
        return
    timezone = _timezone(session, job.guild_id)
    keys = keys_for(job.guild_id, job.user_id, job.queued_at, timezone)
    chosen = list(keys.all())
    reset = session.get(MemberReset, (job.guild_id or DM_GUILD, job.user_id))
    if reset is not None and forgiven(reset.reset_at, job.queued_at, timezone):
        chosen.remove(keys.member_day)
    add_sync(session, chosen, images, spend)


def forgiven(reset_at: datetime, queued_at: datetime, timezone: str) -> bool:
    """Whether a member reset at ``reset_at`` forgave a job queued at ``queued_at``: it came
    later on the job's day, so the job no longer counts in the member's day."""
    reset_at = _aware(reset_at)
    return queued_at <= reset_at < periods(queued_at, timezone).next_day


async def reset_member(
    session: AsyncSession, guild_id: int, user_id: int, now: datetime, timezone: str
) -> None:
    """``/quota reset member``: the member's counter for today starts again from zero."""
    key = keys_for(guild_id, user_id, now, timezone).member_day
    await session.execute(
        update(UsageCounter)
        .where(_is(key))
        .values(images=0, spend_micro=0)
        .execution_options(synchronize_session=False)
    )


async def rebuild_guild(session: AsyncSession, guild_id: int, timezone: str, now: datetime) -> None:
    """The guild's days and months are now those of ``timezone``: count its current month again
    from the ledger (older periods are never checked again, their counters go)."""
    await session.execute(
        delete(UsageCounter)
        .where(UsageCounter.scope.in_([GUILD, MEMBER]), UsageCounter.guild_id == guild_id)
        .execution_options(synchronize_session=False)
    )
    resets = await session.execute(
        select(MemberReset.user_id, MemberReset.reset_at).where(MemberReset.guild_id == guild_id)
    )
    reset_at = {user_id: moment for user_id, moment in resets.all()}
    rows = await session.execute(
        select(Job.user_id, Job.queued_at, Job.n_charged, Job.cost_micro_usd).where(
            Job.guild_id == guild_id, Job.queued_at >= periods(now, timezone).month_start
        )
    )
    totals: dict[Key, list[int]] = {}
    for user_id, queued_at, images, spend in rows.all():
        keys = keys_for(guild_id, user_id or 0, queued_at, timezone)
        chosen = [keys.guild_day, keys.guild_month, keys.member_day]
        reset = reset_at.get(user_id) if user_id is not None else None
        if reset is not None and forgiven(reset, queued_at, timezone):
            chosen.remove(keys.member_day)
        for key in chosen:
            counted = totals.setdefault(key, [0, 0])
            counted[0] += images
            counted[1] += spend
    if totals:
        await session.execute(
            insert(UsageCounter),
            [
                {
                    "scope": key.scope,
                    "guild_id": key.guild_id,
                    "user_id": key.user_id,
                    "period": key.period,
                    "images": images,
                    "spend_micro": spend,
                }
                for key, (images, spend) in totals.items()
            ],
        )


def _timezone(session: Session, guild_id: int | None) -> str:
    """The time zone a guild's periods are in (as :func:`bot.quotas.policy.guild_limits`)."""
    if guild_id is None:
        return "UTC"
    row = session.get(GuildSettings, guild_id)
    return row.timezone if row is not None and row.timezone else "UTC"


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
