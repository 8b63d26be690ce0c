"""Usage reports, read from the jobs table (the ledger): what a member and an admin are shown.

A member's numbers come from exactly the functions that admit or refuse a request
(:func:`bot.quotas.ledger.usage`, :func:`~bot.quotas.ledger.limits_for`,
:func:`bot.quotas.policy.member_limit`), so ``/usage`` can never say "5 left" while a request for
one is refused. Admin reports are SQL aggregates over the current period in the guild's time
zone. Every function takes ``now`` so tests can stand anywhere in time; no Discord imports.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy import ColumnElement, desc, func, select

from bot.config import QuotaSettings
from bot.db import Sessions
from bot.db.models import GuildSettings, Job, JobStatus, RoleLimit, utcnow
from bot.quotas.ledger import limits_for, usage
from bot.quotas.policy import Limits, Periods, member_limit, periods
from bot.quotas.prices import MICRO

#: How a job's status is counted in reports: made, failed, cancelled, interrupted, waiting.
OUTCOMES: dict[JobStatus, str] = {
    JobStatus.SUCCEEDED: "done",
    JobStatus.DELIVERED: "done",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "cancelled",
    JobStatus.INTERRUPTED: "interrupted",
    JobStatus.QUEUED: "pending",
    JobStatus.RUNNING: "pending",
}
OUTCOME_NAMES = ("done", "failed", "cancelled", "interrupted", "pending")

#: The CSV's columns, one row per job; times in ISO 8601 UTC, money in exact decimal dollars.
CSV_COLUMNS = (
    "job_id",
    "queued_at",
    "started_at",
    "finished_at",
    "guild_id",
    "channel_id",
    "member_id",
    "command",
    "model",
    "size",
    "quality",
    "n_requested",
    "n_delivered",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "outcome",
    "error_code",
    "possibly_billed",
)


@dataclass(frozen=True)
class Overview:
    """What ``/quota show`` shows: the limits in force and where each came from."""

    limits: Limits
    chosen: GuildSettings | None
    rules: list[RoleLimit]
    period: Periods

    def is_default(self, field_name: str) -> bool:
        """True when the guild has not chosen ``field_name`` (the operator's default applies)."""
        return self.chosen is None or getattr(self.chosen, field_name) is None


async def overview(
    sessions: Sessions, quotas: QuotaSettings, guild_id: int, now: datetime | None = None
) -> Overview:
    async with sessions() as session:
        row = await session.get(GuildSettings, guild_id)
        limits, rules = await limits_for(session, quotas, guild_id, row)
    rules.sort(key=lambda rule: rule.role_id)
    return Overview(limits, row, rules, periods(now or utcnow(), limits.timezone))


@dataclass(frozen=True)
class MemberUsage:
    """A member's day and the guild's day and month, as ``/usage me`` shows them."""

    limits: Limits
    period: Periods
    member_used: int
    #: The member's daily limit; None when a role exempts them.
    member_limit: int | None
    guild_today: int
    guild_month: int
    spend_month: int

    @property
    def member_remaining(self) -> int | None:
        return None if self.member_limit is None else max(self.member_limit - self.member_used, 0)

    @property
    def guild_day_remaining(self) -> int:
        return max(self.limits.images_per_day - self.guild_today, 0)

    @property
    def guild_month_remaining(self) -> int:
        return max(self.limits.images_per_month - self.guild_month, 0)

    @property
    def spend_remaining(self) -> int:
        return max(self.limits.spend_per_month_micro - self.spend_month, 0)


async def member_usage(
    sessions: Sessions,
    quotas: QuotaSettings,
    guild_id: int,
    user_id: int,
    role_ids: Iterable[int] = (),
    now: datetime | None = None,
) -> MemberUsage:
    async with sessions() as session:
        row = await session.get(GuildSettings, guild_id)
        limits, rules = await limits_for(session, quotas, guild_id, row)
        period = periods(now or utcnow(), limits.timezone)
        used = await usage(session, guild_id, user_id, period)
    return MemberUsage(
        limits=limits,
        period=period,
        member_used=used.member_today,
        member_limit=member_limit(limits, rules, role_ids),
        guild_today=used.guild_today,
        guild_month=used.guild_month,
        spend_month=used.guild_spend_month,
    )


@dataclass(frozen=True)
class MemberTotal:
    user_id: int
    jobs: int
    images: int
    cost_micro: int


@dataclass(frozen=True)
class ModelTotal:
    model: str
    jobs: int
    images: int
    cost_micro: int


@dataclass(frozen=True)
class ServerReport:
    """This month in one guild: totals, outcomes, top members and models.

    ``images`` and ``cost_micro`` count what the limits count: images delivered and their real
    cost, plus the reservations of requests still waiting or running (``pending_images``).
    """

    limits: Limits
    period: Periods
    jobs: int
    images: int
    pending_images: int
    images_today: int
    cost_micro: int
    outcomes: dict[str, int] = field(default_factory=dict)
    #: Requests cut off after they were sent (no images): their estimates are in ``cost_micro``.
    possibly_billed_jobs: int = 0
    possibly_billed_micro: int = 0
    top_members: list[MemberTotal] = field(default_factory=list)
    models: list[ModelTotal] = field(default_factory=list)


def _this_month(guild_id: int, period: Periods) -> list[ColumnElement[bool]]:
    return [
        Job.guild_id == guild_id,
        Job.queued_at >= period.month_start,
        Job.queued_at < period.next_month,
    ]


async def server_report(
    sessions: Sessions,
    quotas: QuotaSettings,
    guild_id: int,
    now: datetime | None = None,
    top: int = 10,
) -> ServerReport:
    images, cost = (
        func.coalesce(func.sum(Job.n_charged), 0),
        func.coalesce(func.sum(Job.cost_micro_usd), 0),
    )
    async with sessions() as session:
        row = await session.get(GuildSettings, guild_id)
        limits, _ = await limits_for(session, quotas, guild_id, row)
        period = periods(now or utcnow(), limits.timezone)
        where = _this_month(guild_id, period)
        by_status = await session.execute(
            select(Job.status, func.count(), images, cost).where(*where).group_by(Job.status)
        )
        today = await session.execute(
            select(images).where(
                *where, Job.queued_at >= period.day_start, Job.queued_at < period.next_day
            )
        )
        members = await session.execute(
            select(Job.user_id, func.count(), images, cost)
            .where(*where, Job.user_id.is_not(None))
            .group_by(Job.user_id)
            .having(images > 0)
            .order_by(desc(images), desc(cost), Job.user_id)
            .limit(top)
        )
        models = await session.execute(
            select(Job.model, func.count(), images, cost)
            .where(*where)
            .group_by(Job.model)
            .order_by(desc(images), Job.model)
        )
        cut_off = await session.execute(
            select(func.count(), cost).where(*where, Job.possibly_billed.is_(True))
        )
        cut_off_jobs, cut_off_cost = cut_off.one()
        images_today = int(today.scalar_one())
        status_rows = by_status.all()
        member_rows, model_rows = members.all(), models.all()
    outcomes = dict.fromkeys(OUTCOME_NAMES, 0)
    total_jobs = total_images = pending = total_cost = 0
    for status, count, charged, spent in status_rows:
        outcomes[OUTCOMES[JobStatus(status)]] += int(count)
        total_jobs += int(count)
        total_images += int(charged)
        total_cost += int(spent)
        if OUTCOMES[JobStatus(status)] == "pending":
            pending += int(charged)
    return ServerReport(
        limits=limits,
        period=period,
        jobs=total_jobs,
        images=total_images,
        pending_images=pending,
        images_today=images_today,
        cost_micro=total_cost,
        outcomes=outcomes,
        possibly_billed_jobs=int(cut_off_jobs),
        possibly_billed_micro=int(cut_off_cost),
        top_members=[
            MemberTotal(int(u or 0), int(j), int(i), int(c)) for u, j, i, c in member_rows
        ],
        models=[ModelTotal(str(m), int(j), int(i), int(c)) for m, j, i, c in model_rows],
    )


async def ledger_rows(sessions: Sessions, guild_id: int, period: Periods) -> Sequence[Job]:
    """This month's jobs of the guild, oldest first (the rows of the CSV)."""
    async with sessions() as session:
        rows = await session.execute(
            select(Job).where(*_this_month(guild_id, period)).order_by(Job.queued_at, Job.id)
        )
        return rows.scalars().all()


def _when(moment: datetime | None) -> str:
    return moment.isoformat() if moment is not None else ""


def _number(value: int | None) -> str:
    return "" if value is None else str(value)


def usd_decimal(micro: int) -> str:
    """Exact dollars for spreadsheets: 20000 -> "0.020000"."""
    return str((Decimal(micro) / MICRO).quantize(Decimal("0.000001")))


#: A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str:
    """The value as text a spreadsheet shows as text: a leading quote disarms a formula.

    Text cells come from outside the bot's control (the provider's answer, operator model names),
    and the file is opened by an admin in a spreadsheet, so every cell is checked.
    """
    text = str(value)
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


def ledger_csv(jobs: Iterable[Job]) -> str:
    """One row per job with :data:`CSV_COLUMNS`; prompts are left out (members' words)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for job in jobs:
        cells = (
            job.id,
            _when(job.queued_at),
            _when(job.started_at),
            _when(job.finished_at),
            _number(job.guild_id),
            _number(job.channel_id),
            _number(job.user_id),
            job.command or job.operation,
            job.model,
            job.size or "",
            job.quality or "",
            job.n_requested,
            job.n_delivered,
            _number(job.input_tokens),
            _number(job.output_tokens),
            usd_decimal(job.cost_micro_usd),
            JobStatus(job.status).value,
            job.error_code or "",
            "yes" if job.possibly_billed else "",
        )
        writer.writerow([csv_cell(cell) for cell in cells])
    return out.getvalue()
