"""The charts' days from a real ledger (SQLite and PostgreSQL): local days, outcomes, members."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from bot.db import JobStatus
from bot.db.engine import Storage
from bot.quotas.history import daily_usage
from tests.quotas.test_reports import GUILD, NOW, OTHER_GUILD, add_job


async def test_thirty_local_days_oldest_first_with_empty_days(storage: Storage) -> None:
    days = await daily_usage(storage.sessions, GUILD, "UTC", now=NOW)
    assert len(days) == 30
    assert days[0].day == date(2026, 10, 23) and days[-1].day == date(2026, 11, 21)
    assert all(day.total_images == 0 and day.spend_micro == 0 for day in days)


async def test_each_outcome_counts_the_images_it_stands_for(storage: Storage) -> None:
    await add_job(storage, n=2)
    await add_job(storage, n=3, status=JobStatus.FAILED)
    await add_job(storage, n=1, status=JobStatus.CANCELLED)
    await add_job(storage, n=4, status=JobStatus.QUEUED)
    await add_job(storage, n=1, at=NOW - timedelta(days=3))
    await add_job(storage, n=9, guild=OTHER_GUILD)
    await add_job(storage, n=5, at=NOW - timedelta(days=30))  # 31 days ago: not shown
    days = await daily_usage(storage.sessions, GUILD, "UTC", now=NOW)
    today, earlier = days[-1], days[-4]
    assert today.images == {"done": 2, "failed": 3, "cancelled": 1, "pending": 4}
    assert today.spend_micro == 6 * 20_000  # what was made and what is reserved
    assert earlier.images == {"done": 1} and earlier.day == date(2026, 11, 18)
    assert sum(day.total_images for day in days) == 11


async def test_days_are_the_servers_local_days(storage: Storage) -> None:
    # 23:30 UTC on the 20th is already the 21st in Tokyo, and still the 20th in UTC.
    await add_job(storage, at=datetime(2026, 11, 20, 23, 30, tzinfo=UTC))
    in_utc = await daily_usage(storage.sessions, GUILD, "UTC", now=NOW)
    in_tokyo = await daily_usage(storage.sessions, GUILD, "Asia/Tokyo", now=NOW)
    assert in_utc[-2].images == {"done": 1} and in_utc[-2].day == date(2026, 11, 20)
    assert in_tokyo[-1].images == {"done": 1} and in_tokyo[-1].day == date(2026, 11, 21)


async def test_one_members_days(storage: Storage) -> None:
    await add_job(storage, n=2, user=1)
    await add_job(storage, n=3, user=2)
    days = await daily_usage(storage.sessions, GUILD, "UTC", user_id=2, now=NOW)
    assert days[-1].images == {"done": 3}
