"""``python -m bot usage report``: the operator's month across every server and the DMs.

Totals (requests, images, spend), requests by outcome, and spend by server, read from the jobs
ledger. Months are UTC calendar months, as the operator's total spending caps count them
(:func:`bot.quotas.ledger.check` uses UTC periods), so the report's total is the number those
caps compare against. Images and spend are counted as the limits count them: images made plus
those reserved by requests still waiting or running, and the real cost (with the estimates of
requests cut off that may have been billed). Servers are shown by id: the database keeps no
server names.
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from bot.charts import DayUsage, ServerSpend, month_chart
from bot.config import Settings
from bot.db import Sessions, create_engine, create_sessionmaker, upgrade_database
from bot.db.models import Job, JobStatus, utcnow
from bot.errors import UsageError
from bot.exit_codes import EXIT_OK
from bot.quotas.policy import usd
from bot.quotas.reports import OUTCOME_NAMES, OUTCOMES, csv_cell, usd_decimal

#: How many servers the table and the chart list by name; the CSV has every one.
TOP_SERVERS = 10
#: The label of the direct messages' row.
DMS = "DMs"
CSV_FIELDS = ("server", "requests", "images", "spend_usd", *OUTCOME_NAMES)
MONTH = re.compile(r"(\d{4})-(\d{2})")


@dataclass
class ServerTotal:
    """One server's month (``guild_id`` None: the direct messages)."""

    guild_id: int | None
    jobs: int = 0
    images: int = 0
    cost_micro: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOME_NAMES, 0))

    @property
    def label(self) -> str:
        return DMS if self.guild_id is None else str(self.guild_id)


@dataclass(frozen=True)
class MonthReport:
    month: date
    #: Every server with a request this month, the most spent first (then most images).
    servers: list[ServerTotal]
    #: Each UTC day of the month (up to today for the current month): spend in ``spend_micro``.
    days: list[DayUsage]

    @property
    def total(self) -> ServerTotal:
        total = ServerTotal(None)
        for server in self.servers:
            total.jobs += server.jobs
            total.images += server.images
            total.cost_micro += server.cost_micro
            for name, count in server.outcomes.items():
                total.outcomes[name] += count
        return total


def parse_month(text: str | None, now: datetime | None = None) -> date:
    """``YYYY-MM`` as the first of that month; None is the current UTC month."""
    if text is None:
        return (now or utcnow()).astimezone(UTC).date().replace(day=1)
    match = MONTH.fullmatch(text.strip())
    if match is None or not 1 <= int(match[2]) <= 12 or int(match[1]) < 2000:
        raise UsageError(f"--month must be a month as YYYY-MM, e.g. 2026-11 (got {text!r})")
    return date(int(match[1]), int(match[2]), 1)


def next_month(month: date) -> date:
    return (month.replace(day=28) + timedelta(days=4)).replace(day=1)


def _instant(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def month_report(sessions: Sessions, month: date, now: datetime | None = None) -> MonthReport:
    start, end = _instant(month), _instant(next_month(month))
    where = (Job.queued_at >= start, Job.queued_at < end)
    async with sessions() as session:
        by_server = await session.execute(
            select(
                Job.guild_id,
                Job.status,
                func.count(),
                func.coalesce(func.sum(Job.n_charged), 0),
                func.coalesce(func.sum(Job.cost_micro_usd), 0),
            )
            .where(*where)
            .group_by(Job.guild_id, Job.status)
        )
        server_rows = by_server.all()
        # Day buckets in Python (SQLite and PostgreSQL truncate dates differently); only the
        # month's rows that cost something, two columns each.
        spent = await session.execute(
            select(Job.queued_at, Job.cost_micro_usd).where(*where, Job.cost_micro_usd > 0)
        )
        spend_rows = spent.all()
    servers: dict[int | None, ServerTotal] = {}
    for guild_id, status, jobs, images, cost in server_rows:
        server = servers.setdefault(guild_id, ServerTotal(guild_id))
        server.jobs += int(jobs)
        server.images += int(images)
        server.cost_micro += int(cost)
        server.outcomes[OUTCOMES[JobStatus(status)]] += int(jobs)
    per_day: dict[date, int] = defaultdict(int)
    for queued_at, cost in spend_rows:
        per_day[_aware(queued_at).astimezone(UTC).date()] += int(cost)
    today = (now or utcnow()).astimezone(UTC).date()
    last = min(next_month(month) - timedelta(days=1), max(today, month))
    days = [
        DayUsage(day, spend_micro=per_day.get(day, 0))
        for day in (month + timedelta(days=n) for n in range((last - month).days + 1))
    ]
    ordered = sorted(servers.values(), key=lambda s: (-s.cost_micro, -s.images, s.guild_id or 0))
    return MonthReport(month, ordered, days)


def report_text(report: MonthReport, top: int = TOP_SERVERS) -> str:
    """The table the command prints: totals, outcomes, then the top servers by spend."""
    total = report.total
    lines = [f"Usage in {report.month:%Y-%m} (UTC), all servers and direct messages"]
    if not report.servers:
        lines.append("No usage this month.")
        return "\n".join(lines)
    outcomes = ", ".join(f"{count} {name}" for name, count in total.outcomes.items())
    lines += [
        f"Requests: {total.jobs} ({outcomes})",
        f"Images:   {total.images}",
        f"Spend:    {usd(total.cost_micro)}",
        f"Servers:  {sum(s.guild_id is not None for s in report.servers)}",
        "",
        f"Top {min(top, len(report.servers))} by spend:",
    ]
    width = max(len(s.label) for s in report.servers[:top])
    header = f"  {'server':<{width}}  {'requests':>8}  {'images':>7}  {'spend':>10}  {'share':>5}"
    lines += [header, "  " + "-" * (len(header) - 2)]
    for server in report.servers[:top]:
        share = f"{server.cost_micro / total.cost_micro:.0%}" if total.cost_micro else "-"
        lines.append(
            f"  {server.label:<{width}}  {server.jobs:>8}  {server.images:>7}  "
            f"{usd(server.cost_micro):>10}  {share:>5}"
        )
    rest = report.servers[top:]
    if rest:
        spend = sum(s.cost_micro for s in rest)
        lines.append(f"  … and {len(rest)} more servers: {usd(spend)} (see --csv)")
    return "\n".join(lines)


def report_csv(report: MonthReport) -> str:
    """One row per server (and one for the DMs), the most spent first; exact decimal dollars."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for server in report.servers:
        cells = [server.label, server.jobs, server.images, usd_decimal(server.cost_micro)]
        cells += [server.outcomes[name] for name in OUTCOME_NAMES]
        writer.writerow([csv_cell(cell) for cell in cells])
    return out.getvalue()


def report_chart(report: MonthReport, top: int = TOP_SERVERS) -> bytes:
    servers = [ServerSpend(s.label, s.cost_micro, s.images) for s in report.servers]
    title = f"Usage in {report.month:%Y-%m}: {usd(report.total.cost_micro)} in all"
    return month_chart(report.days, servers, title=title, top=top)


def _check_folder(path: Path | None, option: str) -> None:
    """Refuse an output file whose folder doesn't exist before the database is read."""
    if path is not None and not path.parent.is_dir():
        raise UsageError(f"{option} {path}: the folder {path.parent} does not exist")
    if path is not None and path.is_dir():
        raise UsageError(f"{option} {path}: is a folder, not a file")


def _write(path: Path, data: bytes, option: str) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot write there ({exc.strerror})") from None


async def usage_report(
    settings: Settings, month_text: str | None, csv_path: Path | None, chart_path: Path | None
) -> int:
    month = parse_month(month_text)
    _check_folder(csv_path, "--csv")
    _check_folder(chart_path, "--chart")
    engine = create_engine(settings.database.url)
    try:
        await upgrade_database(engine)  # as every command that opens the database
        report = await month_report(create_sessionmaker(engine), month)
    finally:
        await engine.dispose()
    print(report_text(report))
    if csv_path is not None:
        _write(csv_path, report_csv(report).encode("utf-8"), "--csv")
        print(f"per-server rows written to {csv_path}")
    if chart_path is not None:
        _write(chart_path, report_chart(report), "--chart")
        print(f"chart written to {chart_path}")
    return EXIT_OK
