"""Usage counters: a new day and month start new counts, an upgraded database keeps its counts,
a new time zone regroups the month, a member reset forgives what came before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import MetaData, Table, insert
from sqlalchemy.engine import Connection

from bot.config import QuotaSettings
from bot.db import Job, JobStatus, create_engine, create_sessionmaker, upgrade_database
from bot.db.engine import Storage
from bot.db.models import utcnow
from bot.jobs.store import admit, finish_without_images
from bot.quotas import admin
from bot.quotas.admin import LimitChanges
from bot.quotas.policy import GuildDailyLimit, GuildMonthlyLimit, MemberDailyLimit
from tests.quotas.counting import counted, summed
from tests.quotas.test_ledger import GUILD
from tests.quotas.test_ledger import job as ledger_job

PRICE = 20_000


def reflected(connection: Connection, *names: str) -> dict[str, Table]:
    """The tables as the database has them now (an older revision's columns)."""
    meta = MetaData()
    return {name: Table(name, meta, autoload_with=connection) for name in names}


def job(user: int = 1, n: int = 1, guild: int | None = GUILD) -> Job:
    return ledger_job(user=user, n=n, cost=PRICE * n, guild=guild)


async def test_a_new_day_and_a_new_month_start_new_counts(storage: Storage) -> None:
    quotas = QuotaSettings(images_per_day=2, images_per_month=3, member_images_per_day=10)
    last_evening = datetime(2026, 1, 31, 23, 59, tzinfo=UTC)
    reserved = await admit(storage.transactions, quotas, job(n=2), now=last_evening)
    with pytest.raises(GuildDailyLimit):
        await admit(storage.transactions, quotas, job(), now=last_evening)
    first_morning = datetime(2026, 2, 1, 0, 1, tzinfo=UTC)
    await admit(storage.transactions, quotas, job(n=2), now=first_morning)  # a new day and month
    # the job reserved yesterday fails today: yesterday's counts give it back, not today's
    await finish_without_images(storage.sessions, reserved.id, JobStatus.FAILED)
    with pytest.raises(GuildDailyLimit):
        await admit(storage.transactions, quotas, job(), now=first_morning)
    async with storage.sessions() as session:
        assert (await counted(session, GUILD, 1, last_evening))[:4] == (0, 0, 0, 0)
        assert await counted(session, GUILD, 1, first_morning) == (
            2,
            2,
            2 * PRICE,
            2,
            40_000,
            40_000,
        )
        assert await counted(session, GUILD, 1, first_morning) == await summed(
            session, GUILD, 1, first_morning
        )
    march = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    await admit(storage.transactions, quotas, job(n=2), now=march)
    with pytest.raises(GuildDailyLimit):
        await admit(storage.transactions, quotas, job(), now=march)
    await admit(storage.transactions, quotas, job(), now=march + timedelta(days=1))
    with pytest.raises(GuildMonthlyLimit):
        await admit(storage.transactions, quotas, job(), now=march + timedelta(days=2))


async def test_an_upgraded_database_keeps_its_counts(database_url: str) -> None:
    """Rows written before the counters existed (schema 0004) are counted by the upgrade."""
    now = utcnow()
    engine = create_engine(database_url)
    try:
        await upgrade_database(engine, "0004")
        # Minutes before now, but all today: the upgrade counts by the real clock's day.
        since_midnight = now - now.replace(hour=0, minute=0, second=0, microsecond=0)
        unit = min(timedelta(minutes=1), since_midnight / 12)
        at = now - 5 * unit
        earlier = now - 10 * unit
        rows = [  # guild, user, status, n_charged, cost, queued_at
            (GUILD, 1, "delivered", 2, 2 * PRICE, at),
            (GUILD, 1, "failed", 0, 0, at),
            (GUILD, 2, "queued", 1, PRICE, at),
            (GUILD, 2, "interrupted", 0, PRICE, at),  # possibly billed
            (GUILD, 3, "delivered", 3, 3 * PRICE, earlier),  # before the member's reset
            (None, 1, "delivered", 1, PRICE, at),  # a DM
            (GUILD, 1, "delivered", 5, 5 * PRICE, now - timedelta(days=40)),  # an old month
        ]
        async with engine.begin() as connection:  # the tables as they were at 0004
            tables = await connection.run_sync(reflected, "jobs", "member_resets")
            await connection.execute(
                insert(tables["jobs"]),
                [
                    {
                        "guild_id": g,
                        "user_id": u,
                        "operation": "generate",
                        "model": "dall-e-2",
                        "prompt": "p",
                        "n_requested": max(n, 1),
                        "n_delivered": 0,
                        "n_charged": n,
                        "status": s,
                        "cost_micro_usd": c,
                        "possibly_billed": False,
                        "queued_at": q,
                    }
                    for g, u, s, n, c, q in rows
                ],
            )
            await connection.execute(
                insert(tables["member_resets"]).values(
                    guild_id=GUILD, user_id=3, reset_at=now - 7 * unit
                )
            )
        await upgrade_database(engine)
        storage = Storage(engine, create_sessionmaker(engine))
        async with storage.sessions() as session:
            for guild, user in ((GUILD, 1), (GUILD, 2), (GUILD, 3), (None, 1)):
                assert await counted(session, guild, user, now) == await summed(
                    session, guild, user, now
                )
            assert (await counted(session, GUILD, 3, now))[3] == 0  # forgiven by the reset
        quotas = QuotaSettings(images_per_day=7, member_images_per_day=10)
        with pytest.raises(GuildDailyLimit) as info:
            await admit(storage.transactions, quotas, job(n=2), now=now)
        assert info.value.params["remaining"] == 1  # 2 + 1 + 3 of 7 used today
    finally:
        await engine.dispose()


async def test_a_new_time_zone_regroups_the_days(storage: Storage) -> None:
    quotas = QuotaSettings(images_per_day=100, member_images_per_day=100)
    now = utcnow()
    await admit(storage.transactions, quotas, job(n=2), now=now - timedelta(hours=6))
    await admit(storage.transactions, quotas, job(n=3), now=now)
    for timezone in ("Pacific/Kiritimati", "Pacific/Pago_Pago", "UTC"):
        await admin.apply_changes(storage.sessions, quotas, GUILD, LimitChanges(timezone=timezone))
        async with storage.sessions() as session:
            assert await counted(session, GUILD, 1, now, timezone) == await summed(
                session, GUILD, 1, now, timezone
            )


async def test_a_member_reset_forgives_what_came_before_and_only_that(storage: Storage) -> None:
    quotas = QuotaSettings(member_images_per_day=2)
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    before = await admit(storage.transactions, quotas, job(user=3, n=2), now=now)
    with pytest.raises(MemberDailyLimit):
        await admit(storage.transactions, quotas, job(user=3), now=now)
    await admin.reset_member(storage.sessions, GUILD, 3, now=now + timedelta(minutes=1))
    after = now + timedelta(minutes=2)
    await admit(storage.transactions, quotas, job(user=3), now=after)
    # the forgiven job fails later: the member's new count does not go down for it
    await finish_without_images(storage.sessions, before.id, JobStatus.FAILED)
    await admit(storage.transactions, quotas, job(user=3), now=after)
    with pytest.raises(MemberDailyLimit):
        await admit(storage.transactions, quotas, job(user=3), now=after)
    async with storage.sessions() as session:
        assert (await counted(session, GUILD, 3, after))[3] == 2
        assert (await counted(session, GUILD, 3, after))[3] == (
            await summed(session, GUILD, 3, after)
        )[3]
