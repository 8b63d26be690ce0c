"""The provider's rate limit shared by every process on one PostgreSQL database.

Several workers with one provider key must together stay under ``images_per_minute``: each
keeping :class:`~bot.jobs.ratelimit.ImageRateLimiter` in its own memory would let the provider
see N times the rate and answer 429. So the same two rules (GCRA spacing with a burst
allowance, and a sliding window one second longer than the provider's minute, counting a
request from when it is granted until a window after it is answered) are kept in the database:
one ``rate_lanes`` row per backend holds the GCRA state and the pause a 429's ``retry-after``
set, and every request in flight or answered within the window is a ``rate_grants`` row.

A grant is decided in one short transaction holding the lane's row lock, so two processes
never both take the last images. Every time is the database's clock
(``clock_timestamp()``), never a process's: workers on machines whose clocks disagree still
share one timeline.

A process that dies with a request in flight never answers its grant. An unanswered grant is
taken as answered ``max_in_flight`` seconds after it was granted (by then any live process
would have had its answer: the provider's timeouts and retries are bounded), so a dead worker
holds back its lane for at most that long plus the window, never for ever.

SQLite (one process) keeps the in-memory limiter: this module is used only on PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Float, cast, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from bot.config import ProviderSettings
from bot.db.engine import Sessions, finish_even_if_cancelled
from bot.db.models import RateGrant, RateLane
from bot.jobs.ratelimit import WINDOW_MARGIN, WINDOW_SECONDS

#: Longest sleep between two looks while waiting: a grant given back early (:meth:`release`)
#: lets a waiter go within this, though the computed wait was longer.
RECHECK_SECONDS = 1.0


def _db_now() -> ColumnElement[float]:
    """The database's clock, in epoch seconds (``now()`` would be the transaction's start)."""
    return cast(func.extract("epoch", func.clock_timestamp()), Float)


def longest_request(settings: ProviderSettings) -> float:
    """Seconds one request to this backend may be in flight at most: every attempt timing
    out and every retry waiting as long as it may. A grant unanswered for longer belongs to a
    process that died."""
    attempts = settings.max_retries + 1
    return attempts * settings.timeout_seconds + settings.max_retries * (
        settings.max_retry_wait_seconds
    )


@dataclass(frozen=True)
class Grant:
    """Permission to send ``images`` on ``lane`` now; hand it back with
    :meth:`SharedRateLimiter.answered` when the provider answered. ``id`` is None on an
    unlimited lane: nothing was recorded; ``granted_at`` is the database's clock then (epoch
    seconds; 0 on an unlimited lane)."""

    lane: str
    images: int
    id: int | None = None
    granted_at: float = 0.0


@dataclass(frozen=True)
class _Rule:
    per_minute: int
    interval: float  # seconds between images at the average rate
    tolerance: float  # how far ahead of the average rate a burst may run
    window: float  # the provider's minute plus our margin


class SharedRateLimiter:
    def __init__(
        self,
        sessions: Sessions,
        limits: Mapping[str, int | None],
        *,
        max_in_flight: float,
        window: float = WINDOW_SECONDS,
        burst: int | None = None,
    ) -> None:
        """``limits``: images per minute by lane (backend name); None or 0 (or a lane not
        named) is unlimited and never touches the database. ``max_in_flight``: see
        :func:`longest_request`. ``window`` is the provider's "minute" (tests shrink it);
        ``burst`` as in :class:`~bot.jobs.ratelimit.ImageRateLimiter` (default a tenth)."""
        self._sessions = sessions
        self._max_in_flight = max_in_flight
        self._rules = {
            lane: _Rule(
                per_minute=per_minute,
                interval=window / per_minute,
                tolerance=((burst or max(1, per_minute // 10)) - 1) * window / per_minute,
                window=window * (1 + WINDOW_MARGIN / WINDOW_SECONDS),
            )
            for lane, per_minute in limits.items()
            if per_minute
        }

    @classmethod
    def for_backends(
        cls, sessions: Sessions, backends: Mapping[str, ProviderSettings]
    ) -> SharedRateLimiter:
        """The limiter of every configured backend (bot.providers.registry.configured)."""
        return cls(
            sessions,
            {name: settings.images_per_minute for name, settings in backends.items()},
            max_in_flight=max(longest_request(settings) for settings in backends.values()),
        )

    async def acquire(self, lane: str, images: int, job_id: int | None = None) -> Grant:
        """Wait until ``images`` may be sent on ``lane`` by any process, and take them.

        A request for more images than the limit waits until it has the whole window."""
        rule = self._rules.get(lane)
        if rule is None:
            return Grant(lane, images)
        while True:
            grant, wait = await finish_even_if_cancelled(self._try(lane, rule, images, job_id))
            if grant is not None:
                return grant
            await asyncio.sleep(min(wait, RECHECK_SECONDS))

    async def answered(self, grant: Grant) -> None:
        """The provider answered (or the request failed): the grant's window starts now.
        Idempotent."""
        if grant.id is None:
            return
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(RateGrant)
                .where(RateGrant.id == grant.id, RateGrant.answered_at.is_(None))
                .values(answered_at=_db_now())
            )

    async def release(self, grant: Grant) -> None:
        """The request was certainly never sent: its images stop counting at once."""
        if grant.id is None:
            return
        async with self._sessions() as session, session.begin():
            await session.execute(delete(RateGrant).where(RateGrant.id == grant.id))

    async def pause(self, lane: str, seconds: float) -> None:
        """The provider asked to wait ``seconds`` (a 429's ``retry-after``): no process sends
        on ``lane`` until then. A shorter pause never shortens a longer one."""
        if lane not in self._rules or seconds <= 0:
            return
        until = _db_now() + seconds
        statement = pg_insert(RateLane).values(lane=lane, next_free=0.0, paused_until=until)
        statement = statement.on_conflict_do_update(
            index_elements=[RateLane.lane],
            set_={
                "paused_until": func.greatest(
                    func.coalesce(RateLane.paused_until, 0.0), statement.excluded.paused_until
                )
            },
        )
        async with self._sessions() as session, session.begin():
            await session.execute(statement)

    async def _try(
        self, lane: str, rule: _Rule, images: int, job_id: int | None
    ) -> tuple[Grant | None, float]:
        """One look under the lane's lock: a grant, or (None, seconds to wait at least)."""
        async with self._sessions() as session, session.begin():
            next_free, paused_until = await _lock_lane(session, lane)
            # Answered (or presumed dead) more than a window ago: the provider forgot them.
            ended = func.coalesce(RateGrant.answered_at, RateGrant.granted_at + self._max_in_flight)
            await session.execute(
                delete(RateGrant).where(RateGrant.lane == lane, ended <= _db_now() - rule.window)
            )
            # The clock is read after the lock was taken: the wait for it is not in "now".
            used_query = select(func.coalesce(func.sum(RateGrant.images), 0)).where(
                RateGrant.lane == lane
            )
            now, used = (
                await session.execute(select(_db_now(), used_query.scalar_subquery()))
            ).one()
            wait = max(0.0, next_free - rule.tolerance - now, (paused_until or 0.0) - now)
            excess = used + min(images, rule.per_minute) - rule.per_minute
            if excess > 0:
                wait = max(wait, await _window_frees(session, lane, rule, excess, now) - now)
            if wait > 1e-9:  # float noise is not a reason to wait
                return None, wait
            grant_id = (
                await session.execute(
                    insert(RateGrant)
                    .values(lane=lane, job_id=job_id, images=images, granted_at=now)
                    .returning(RateGrant.id)
                )
            ).scalar_one()
            await session.execute(
                update(RateLane)
                .where(RateLane.lane == lane)
                .values(next_free=max(next_free, now) + images * rule.interval)
            )
            return Grant(lane, images, grant_id, now), 0.0


async def _lock_lane(session: AsyncSession, lane: str) -> tuple[float, float | None]:
    """The lane's (next_free, paused_until), its row locked until the transaction ends; the
    row is made on the lane's first use (by whichever process comes first)."""
    query = (
        select(RateLane.next_free, RateLane.paused_until)
        .where(RateLane.lane == lane)
        .with_for_update()
    )
    row = (await session.execute(query)).one_or_none()
    if row is None:
        await session.execute(
            pg_insert(RateLane).values(lane=lane, next_free=0.0).on_conflict_do_nothing()
        )
        row = (await session.execute(query)).one()
    return row.next_free, row.paused_until


async def _window_frees(
    session: AsyncSession, lane: str, rule: _Rule, excess: int, now: float
) -> float:
    """When enough images leave the window for ``excess`` more to fit, at the earliest.

    An answered grant leaves a window after its answer; one in flight no earlier than a
    window from now (were it answered this instant), which is the time taken for it."""
    frees = func.coalesce(RateGrant.answered_at, now) + rule.window
    running = (
        select(
            frees.label("frees"),
            func.sum(RateGrant.images).over(order_by=(frees, RateGrant.id)).label("freed"),
        )
        .where(RateGrant.lane == lane)
        .subquery()
    )
    query = (
        select(running.c.frees).where(running.c.freed >= excess).order_by(running.c.frees).limit(1)
    )
    found = (await session.execute(query)).scalar_one_or_none()
    return now + rule.window if found is None else float(found)
