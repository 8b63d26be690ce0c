"""``python -m bot usage report`` as the operator runs it: a real subprocess on a ledger made by
real requests through the fake Discord and image API (two servers, a DM, a refusal)."""

from __future__ import annotations

import csv
import dataclasses
import io
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import update

from bot.config import Settings
from bot.db import Job, JobStatus, create_engine, create_sessionmaker, upgrade_database
from bot.db.engine import Storage
from bot.ops.usage_report import DMS, month_report
from bot.testing.discord import FakeDiscord
from bot.testing.harness import ROOMY_QUOTAS, Harness, made, make_settings, run_bot
from bot.testing.openai_api import FakeImagesAPI
from tests.bot_process import run_cli
from tests.charts.test_usage import colours
from tests.quotas.test_reports import GUILD, NOW, OTHER_GUILD, add_job


def config(tmp_path: Path, settings: Settings) -> str:
    path = tmp_path / "report.toml"
    path.write_text(f'[database]\nurl = "{settings.database.url}"\n', encoding="utf-8")
    return str(path)


async def dm_images(h: Harness, n: int) -> None:
    fake = h.fake
    dm = fake.dm_channel(fake.user)
    await fake.slash("imagine", {"prompt": "a cat", "count": n}, channel=dm)
    await fake.wait_for_message(
        lambda m: bool(m.attachments) and m.channel_id == dm.id,
        timeout=10,
        sources=("channel", "followup", "response"),
    )
    await h.idle()


async def failed(h: Harness) -> None:
    h.api.safety_next()
    handle = await h.fake.slash("imagine", {"prompt": "forbidden", "count": 2})
    await handle.wait_message(lambda m: "safety" in m.content)
    await h.idle()


def png(path: Path) -> Image.Image:
    assert path.stat().st_size < 1_000_000
    with Image.open(path) as image:
        image.load()
        assert image.format == "PNG" and image.size == (1200, 600)
        return image.convert("RGB")


async def test_the_months_report_with_csv_and_chart(
    fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI, tmp_path: Path
) -> None:
    fake = fake_discord
    other = fake.add_guild("Other Server")
    elsewhere = fake.add_channel(other, "general")
    mallory = fake.add_member(other, "mallory")
    settings = make_settings(tmp_path, fake, fake_images_api)
    settings = dataclasses.replace(
        settings, quotas=dataclasses.replace(ROOMY_QUOTAS, dm_enabled=True)
    )
    async with run_bot(fake, fake_images_api, settings) as h:
        await made(h, fake.user, 2)
        await made(h, fake.admin, 1)
        await made(h, mallory, 1, channel=elsewhere)
        await dm_images(h, 2)
        await failed(h)
    assert fake.spec_violations == [] and fake_images_api.spec_violations == []

    table, chart = tmp_path / "servers.csv", tmp_path / "month.png"
    code, out, err = await run_cli(
        "usage", "report", "--config", config(tmp_path, settings),
        "--csv", str(table), "--chart", str(chart),
    )  # fmt: skip
    assert code == 0, err
    month = datetime.now(UTC).strftime("%Y-%m")
    lines = out.splitlines()
    assert lines[:5] == [
        f"Usage in {month} (UTC), all servers and direct messages",
        "Requests: 5 (4 done, 1 failed, 0 cancelled, 0 interrupted, 0 pending)",
        "Images:   6",
        "Spend:    $0.12",
        "Servers:  2",
    ]
    assert "Top 3 by spend:" in lines
    home_row = next(line for line in lines if line.strip().startswith(str(fake.guild.id)))
    assert home_row.split() == [str(fake.guild.id), "3", "3", "$0.06", "50%"]
    assert any(line.split()[:1] == ["DMs"] and "$0.04" in line for line in lines)
    assert f"per-server rows written to {table}" in lines

    rows = list(csv.DictReader(io.StringIO(table.read_text(encoding="utf-8"))))
    assert [(r["server"], r["requests"], r["images"], r["spend_usd"]) for r in rows] == [
        (str(fake.guild.id), "3", "3", "0.060000"),
        ("DMs", "1", "2", "0.040000"),
        (str(other.id), "1", "1", "0.020000"),
    ]
    assert (rows[0]["done"], rows[0]["failed"]) == ("2", "1")
    assert len(colours(png(chart))) > 20


async def test_a_month_without_usage(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    path = tmp_path / "c.toml"
    path.write_text(f'[database]\nurl = "{url}"\n', encoding="utf-8")
    table, chart = tmp_path / "servers.csv", tmp_path / "month.png"
    code, out, err = await run_cli(
        "usage", "report", "--month", "2026-02", "--config", str(path),
        "--csv", str(table), "--chart", str(chart),
    )  # fmt: skip
    assert code == 0, err
    assert out.splitlines()[:2] == [
        "Usage in 2026-02 (UTC), all servers and direct messages",
        "No usage this month.",
    ]
    assert table.read_text(encoding="utf-8").splitlines() == [
        "server,requests,images,spend_usd,done,failed,cancelled,interrupted,pending"
    ]
    assert len(colours(png(chart))) > 5  # axes and the "No usage" note, not a blank image
    assert err == ""  # no migration chatter around the report


@pytest.mark.parametrize("month", ["2026-13", "november", "2026-1", "26-11"])
async def test_a_bad_month_is_a_one_line_usage_error(tmp_path: Path, month: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path}/bot.db"\n')
    code, out, err = await run_cli("usage", "report", "--month", month, "--config", str(path))
    assert code == 2 and out == ""
    assert err == f"error: --month must be a month as YYYY-MM, e.g. 2026-11 (got {month!r})\n"
    assert not (tmp_path / "bot.db").exists()  # refused before the database is opened


async def test_an_output_file_in_a_missing_folder_is_refused_first(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path}/bot.db"\n')
    chart = tmp_path / "missing" / "month.png"
    code, out, err = await run_cli("usage", "report", "--chart", str(chart), "--config", str(path))
    assert code == 2 and out == ""
    assert err == f"error: --chart {chart}: the folder {chart.parent} does not exist\n"


async def test_the_report_has_help() -> None:
    code, out, _ = await run_cli("usage", "report", "--help")
    assert code == 0
    assert "--month YYYY-MM" in out and "--csv FILE" in out and "--chart FILE" in out


async def test_the_month_is_a_utc_month_on_either_database(database_url: str) -> None:
    """At store level on SQLite and PostgreSQL: the month's edges, the DMs, the day buckets."""
    engine = create_engine(database_url)
    await upgrade_database(engine)
    storage = Storage(engine, create_sessionmaker(engine))
    try:
        await add_job(storage, n=2, at=datetime(2026, 11, 1, 0, 0, tzinfo=UTC))
        await add_job(
            storage, n=1, at=datetime(2026, 11, 30, 23, 59, tzinfo=UTC), guild=OTHER_GUILD
        )
        await add_job(storage, n=3, status=JobStatus.FAILED, at=NOW)
        await add_job(storage, n=4, at=datetime(2026, 10, 31, 23, 59, tzinfo=UTC))  # October
        await add_job(storage, n=5, at=datetime(2026, 12, 1, 0, 0, tzinfo=UTC))  # December
        dm = await add_job(storage, n=1, at=NOW, guild=GUILD)
        async with storage.sessions() as session, session.begin():
            await session.execute(update(Job).where(Job.id == dm.id).values(guild_id=None))
        later = datetime(2026, 12, 5, tzinfo=UTC)
        report = await month_report(storage.sessions, date(2026, 11, 1), now=later)
    finally:
        await engine.dispose()
    assert [(s.label, s.jobs, s.images, s.cost_micro) for s in report.servers] == [
        (str(GUILD), 2, 2, 40_000),
        (DMS, 1, 1, 20_000),
        (str(OTHER_GUILD), 1, 1, 20_000),
    ]
    assert report.total.outcomes == {
        "done": 3, "failed": 1, "cancelled": 0, "interrupted": 0, "pending": 0
    }  # fmt: skip
    # A past month has all its days; each day's spend is where its requests were queued.
    assert len(report.days) == 30
    assert report.days[0].spend_micro == 40_000 and report.days[-1].spend_micro == 20_000
    assert report.days[20].spend_micro == 20_000  # the DM on the 21st (the failure cost nothing)
