"""Reservations: a quota is never overdrawn, however many requests arrive at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from bot.config import QuotaSettings
from bot.db import Job, JobStatus
from bot.db.engine import Storage
from bot.db.models import GuildSettings, RoleLimit
from bot.discord.i18n import Catalog
from bot.errors import BotError
from bot.jobs.store import admit, finish_without_images, would_fit
from bot.quotas.admin import reset_member
from bot.quotas.policy import (
    ChannelNotAllowed,
    DirectMessagesOff,
    GuildBudget,
    GuildDailyLimit,
    MemberDailyLimit,
    QuotaError,
    TotalBudget,
    TotalDailyBudget,
)

GUILD = 900_000_000_000_000_001
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
CATALOG = Catalog.load()


def told(error: BotError) -> str:
    """What a member reads: the ledger passes times and channel ids, Discord shows them."""
    return CATALOG.error_text(error)


def job(
    user: int = 1, n: int = 1, cost: int = 20_000, guild: int | None = GUILD, channel: int = 5
) -> Job:
    return Job(
        guild_id=guild,
        channel_id=channel,
        user_id=user,
        operation="generate",
        model="dall-e-2",
        prompt="p",
        n_requested=n,
        n_delivered=0,
        status=JobStatus.QUEUED,
        cost_micro_usd=cost,
    )


async def charged(storage: Storage) -> int:
    async with storage.sessions() as session:
        return int((await session.execute(select(func.sum(Job.n_charged)))).scalar_one() or 0)


async def test_200_concurrent_requests_admit_exactly_the_quota(storage: Storage) -> None:
    quotas = QuotaSettings(
        images_per_day=37, member_images_per_day=1000, max_member_images_per_day=1000
    )

    async def attempt(i: int) -> bool:
        try:
            await admit(storage.transactions, quotas, job(user=i % 7 + 1), now=NOW)
        except GuildDailyLimit:
            return False
        return True

    results = await asyncio.gather(*(attempt(i) for i in range(200)))
    assert sum(results) == 37
    assert await charged(storage) == 37


async def test_member_limit_roles_and_exemption(storage: Storage) -> None:
    quotas = QuotaSettings(member_images_per_day=2)
    async with storage.sessions() as session, session.begin():
        session.add(RoleLimit(guild_id=GUILD, role_id=10, images_per_day=5, exempt=False))
        session.add(RoleLimit(guild_id=GUILD, role_id=11, images_per_day=None, exempt=True))
    await admit(storage.transactions, quotas, job(user=1, n=2), now=NOW)
    with pytest.raises(MemberDailyLimit) as info:
        await admit(storage.transactions, quotas, job(user=1), now=NOW)
    assert info.value.params["limit"] == 2 and info.value.params["remaining"] == 0
    assert "<t:" in told(info.value)  # a Discord timestamp: when the limit resets
    await admit(storage.transactions, quotas, job(user=1, n=3), role_ids=[10], now=NOW)
    await admit(storage.transactions, quotas, job(user=1, n=4), role_ids=[11], now=NOW)


async def test_reset_member_and_next_day(storage: Storage) -> None:
    quotas = QuotaSettings(member_images_per_day=1)
    await admit(storage.transactions, quotas, job(user=3), now=NOW)
    with pytest.raises(MemberDailyLimit):
        await admit(storage.transactions, quotas, job(user=3), now=NOW)
    await reset_member(storage.sessions, GUILD, 3, now=NOW)
    await admit(storage.transactions, quotas, job(user=3), now=NOW + timedelta(seconds=1))
    await admit(storage.transactions, quotas, job(user=3), now=NOW + timedelta(days=1))


async def test_guild_time_zone_decides_the_day(storage: Storage) -> None:
    quotas = QuotaSettings(images_per_day=1, member_images_per_day=10)
    async with storage.sessions() as session, session.begin():
        session.add(GuildSettings(guild_id=GUILD, timezone="Asia/Seoul", lock_version=0))
    late = datetime(2026, 11, 21, 14, 30, tzinfo=UTC)  # 23:30 in Seoul
    await admit(storage.transactions, quotas, job(), now=late)
    with pytest.raises(GuildDailyLimit):
        await admit(storage.transactions, quotas, job(), now=late + timedelta(minutes=20))
    # 00:30 in Seoul the next day: a new day there, still the same day in UTC
    await admit(storage.transactions, quotas, job(), now=late + timedelta(hours=1))


async def test_failed_jobs_release_their_reservation(storage: Storage) -> None:
    quotas = QuotaSettings(images_per_day=2)
    first = await admit(storage.transactions, quotas, job(n=2), now=NOW)
    with pytest.raises(GuildDailyLimit):
        await admit(storage.transactions, quotas, job(user=2), now=NOW)
    await finish_without_images(storage.sessions, first.id, JobStatus.FAILED)
    await admit(storage.transactions, quotas, job(user=2), now=NOW)


async def test_budget_channels_and_dms(storage: Storage) -> None:
    quotas = QuotaSettings(spend_per_month_usd=0.05)
    await admit(storage.transactions, quotas, job(cost=40_000), now=NOW)
    with pytest.raises(GuildBudget) as info:
        await admit(storage.transactions, quotas, job(user=2, cost=20_000), now=NOW)
    assert "$0.05" in str(info.value)
    async with storage.sessions() as session, session.begin():
        row = await session.get(GuildSettings, GUILD)
        assert row is not None
        row.allowed_channels = "77 78"
    with pytest.raises(ChannelNotAllowed) as channel_error:
        await admit(storage.transactions, QuotaSettings(), job(channel=5), now=NOW)
    assert "<#77>" in told(channel_error.value)
    # a thread (channel 6) inside an allowed channel counts as that channel
    await admit(
        storage.transactions, QuotaSettings(), job(channel=6), now=NOW, parent_channel_id=78
    )
    with pytest.raises(DirectMessagesOff):
        await admit(storage.transactions, QuotaSettings(), job(guild=None), now=NOW)
    dms = QuotaSettings(dm_enabled=True, dm_images_per_day=1)
    await admit(storage.transactions, dms, job(guild=None), now=NOW)
    with pytest.raises(QuotaError):
        await admit(storage.transactions, dms, job(guild=None), now=NOW)


# --- the operator's total caps: over every guild and DM together ---------------------------------


async def spent(storage: Storage) -> int:
    async with storage.sessions() as session:
        total = (await session.execute(select(func.sum(Job.cost_micro_usd)))).scalar_one()
        return int(total or 0)


async def test_200_concurrent_requests_from_50_guilds_admit_exactly_the_total_cap(
    storage: Storage,
) -> None:
    """Each guild's own budget is far away; only the total cap ($0.74 = 37 requests) binds."""
    quotas = QuotaSettings(
        total_spend_per_month_usd=0.74, member_images_per_day=1000, max_member_images_per_day=1000
    )

    async def attempt(i: int) -> bool:
        try:
            await admit(storage.transactions, quotas, job(user=i, guild=GUILD + i % 50), now=NOW)
        except TotalBudget:
            return False
        return True

    results = await asyncio.gather(*(attempt(i) for i in range(200)))
    assert sum(results) == 37
    assert await spent(storage) == 37 * 20_000


async def test_the_daily_total_cap_and_the_month(storage: Storage) -> None:
    quotas = QuotaSettings(
        total_spend_per_month_usd=0.1, total_spend_per_day_usd=0.04, dm_enabled=True
    )
    await admit(storage.transactions, quotas, job(guild=GUILD, cost=20_000), now=NOW)
    await admit(storage.transactions, quotas, job(guild=None, cost=20_000), now=NOW.replace(hour=1))
    with pytest.raises(TotalDailyBudget) as day:
        await admit(storage.transactions, quotas, job(guild=GUILD + 1, cost=1), now=NOW)
    midnight = int(datetime(2026, 11, 22, tzinfo=UTC).timestamp())  # the next UTC day
    assert "for today" in told(day.value) and f"<t:{midnight}:R>" in told(day.value)
    tomorrow = NOW + timedelta(days=1)
    await admit(storage.transactions, quotas, job(guild=GUILD + 2, cost=40_000), now=tomorrow)
    with pytest.raises(TotalBudget) as month:  # $0.08 spent this month, $0.10 is the cap
        await admit(storage.transactions, quotas, job(guild=GUILD + 3, cost=30_000), now=tomorrow)
    assert "this month" in str(month.value)
    # nothing changes without a day cap (0) either: the month still binds
    no_day_cap = QuotaSettings(total_spend_per_month_usd=0.1)
    await admit(storage.transactions, no_day_cap, job(guild=GUILD + 3, cost=20_000), now=tomorrow)
    assert await spent(storage) == 100_000


async def test_would_fit_says_what_reserve_would_without_writing(storage: Storage) -> None:
    quotas = QuotaSettings(images_per_day=1, total_spend_per_month_usd=100)
    await would_fit(storage.sessions, quotas, job(), now=NOW)
    await admit(storage.transactions, quotas, job(), now=NOW)
    with pytest.raises(GuildDailyLimit):
        await would_fit(storage.sessions, quotas, job(user=2), now=NOW)
    with pytest.raises(TotalBudget):
        await would_fit(
            storage.sessions,
            QuotaSettings(total_spend_per_month_usd=0.02),
            job(guild=GUILD + 1),
            now=NOW,
        )
    assert await charged(storage) == 1
