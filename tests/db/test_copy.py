"""``python -m bot db copy``: a SQLite database the bot made, moved to PostgreSQL.

The source is made by the bot's own code paths (the job runner on the fake image API, the
quota admin functions, the intake book, the installation salt); the copy runs as the operator
runs it, a real ``python -m bot db copy`` process, and the rows are compared on both sides.
"""

from __future__ import annotations

import dataclasses
import io
import os
import tracemalloc
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from PIL import Image
from sqlalchemy import func, select

from bot.config import Settings, StorageSettings
from bot.db import create_engine, create_sessionmaker, upgrade_database
from bot.db.copy import Carried, copy_database
from bot.db.engine import Transactions
from bot.db.installation import user_salt
from bot.db.migrate import alembic_config
from bot.db.models import Base, ImageRole, Intake, JobImage, JobStatus
from bot.generation import ImageOrder
from bot.jobs import store
from bot.jobs.intake import IntakeBook, IntakeOrigin, IntakeRequest, order_options
from bot.jobs.journal import StartedJournal
from bot.jobs.leases import Leases
from bot.jobs.processes import ProcessInfo
from bot.jobs.spool import inflight_dir
from bot.providers import Operation
from bot.quotas import admin
from bot.testing.openai_api import FakeImagesAPI
from bot.testing.postgres import PostgresServer
from tests.bot_process import run_cli
from tests.jobs.test_runner import (
    GUILD_A,
    GUILD_B,
    ROOMY,
    Recorder,
    make_settings,
    open_world,
    order,
    origin,
    submit,
)

#: The latest migration, which the copy requires of both sides.
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()

PASSWORD = "s3cret-Passw0rd"


def png(size: int = 256) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (30, 120, 200)).save(buffer, "PNG")
    return buffer.getvalue()


@dataclasses.dataclass
class Source:
    settings: Settings
    config: Path
    #: The queued job the journal lists as sent to the provider before the stop.
    sent_job: int
    sent_at: datetime
    #: The other queued jobs, in the order they were submitted.
    queued: list[int]
    #: A job an older version marked running in its row (before the journal).
    marked_running: int


def write_config(tmp_path: Path, settings: Settings) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[database]\nurl = "{settings.database.url}"\n'
        f'[storage]\nspool_dir = "{settings.storage.spool_dir}"\n',
        encoding="utf-8",
    )
    return config


async def made_by_the_bot(api: FakeImagesAPI, tmp_path: Path) -> Source:
    """A stopped bot's SQLite database with a row in every table a bot writes."""
    settings = make_settings(
        api,
        tmp_path,
        storage=StorageSettings(spool_dir=str(tmp_path / "spool")),
        quotas=dataclasses.replace(ROOMY, dm_enabled=True),
    )
    async with open_world(api, settings) as world:
        sessions = world.storage.sessions
        await user_salt(sessions)
        changes = admin.LimitChanges(images_per_day=500, timezone="Europe/Paris")
        await admin.apply_changes(sessions, settings.quotas, GUILD_A, changes)
        await admin.set_role_rule(sessions, settings.quotas, GUILD_A, 77, images_per_day=5)
        await admin.reset_member(sessions, GUILD_B, 3)
        # Results: posted (messages), made but not posted (outputs kept), a variation (input).
        runner, recorder = await world.runner(Recorder(post_to=42))
        await submit(runner, "posted", user=1)
        vary = ImageOrder(Operation.VARY, image=png(), size="256x256")
        await runner.submit(vary, origin(2), command="vary")
        await recorder.wait_for("recorded", 2)
        unposted, _ = await world.runner(Recorder(post_to=None))
        await submit(unposted, "kept", user=4, guild=GUILD_B)
        await unposted.wait_idle()
        await runner.close()
        await unposted.close()
        # The stop: queued jobs (one of them already sent), and an acknowledged request.
        stopped, _ = await world.runner(start=False)
        queued = [
            (await submit(stopped, prompt, user, guild)).id
            for prompt, user, guild in [
                ("a1", 1, GUILD_A),
                ("a2", 1, GUILD_A),
                ("b1", 2, GUILD_A),
                ("c1", 3, GUILD_B),
                ("dm", 5, None),
            ]
        ]
        sent_job = (await submit(stopped, "sent", user=6, guild=GUILD_B)).id
        marked_running = (await submit(stopped, "older", user=7, guild=GUILD_B)).id
        await store.mark_running(sessions, marked_running)
        book = IntakeBook(Transactions(sessions))
        now = datetime.now(UTC)
        intake = IntakeOrigin(9001, 99, "token-intake", now, GUILD_A, 5, None, 7, "de")
        await book.open(intake, "imagine", IntakeRequest(order_options(order("later"))))
    sent_at = datetime.now(UTC) - timedelta(seconds=5)
    journal = StartedJournal(inflight_dir(settings) / "started.log")
    journal.started(sent_job, sent_at)
    journal.close()
    config = write_config(tmp_path, settings)
    return Source(settings, config, sent_job, sent_at, queued, marked_running)


async def all_rows(url: str) -> dict[str, list[dict[str, Any]]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            found = {}
            for table in Base.metadata.sorted_tables:
                result = await connection.execute(
                    select(table).order_by(*table.primary_key.columns)
                )
                found[table.name] = [row._asdict() for row in result]
            return found
    finally:
        await engine.dispose()


@pytest.fixture
async def source(fake_images_api: FakeImagesAPI, tmp_path: Path) -> AsyncIterator[Source]:
    yield await made_by_the_bot(fake_images_api, tmp_path)


def with_password(url: str) -> str:
    """The test server trusts 127.0.0.1, so any password is accepted (and must stay hidden)."""
    return url.replace("imagebot@", f"imagebot:{PASSWORD}@", 1)


async def copy(config: Path, *args: str) -> tuple[int, str, str]:
    return await run_cli("db", "copy", "--config", str(config), *args)


# --- the copy --------------------------------------------------------------------------------


async def test_a_database_the_bot_made_arrives_whole_and_new_rows_get_fresh_ids(
    source: Source, postgres_url: str
) -> None:
    before = await all_rows(source.settings.database.url)
    not_written_on_sqlite = {"processes", "rate_grants", "rate_lanes"}
    # Written by admins' and members' settings and by the audit/alerts features, which the
    # bot-made source database does not exercise (the copy is the same for every table).
    not_written_on_sqlite |= {"blocked_terms", "member_settings", "audit_entries", "alerts_sent"}
    assert all(rows for name, rows in before.items() if name not in not_written_on_sqlite)

    code, out, err = await copy(source.config, "--to", with_password(postgres_url))

    assert (code, err.count("Traceback")) == (0, 0), err
    assert PASSWORD not in out + err and "imagebot:***@" in out
    for name, rows in before.items():
        assert f"  {name:<16} {len(rows):>9}" in out.splitlines()
    assert "every table's count matches" in out
    assert "5 queued jobs wait in the shared queue" in out
    assert "2 jobs were running at the stop" in out
    after = await all_rows(postgres_url)
    assert after.keys() == before.keys()
    for name in before:
        if name not in ("jobs", "guild_settings"):
            assert after[name] == before[name], name
    # Keying the queued jobs takes each guild's lock, as an admission does (its version moves).
    unlocked = [{**row, "lock_version": 0} for row in after["guild_settings"]]
    assert unlocked == [{**row, "lock_version": 0} for row in before["guild_settings"]]
    shared_queue = {"lane", "fair_round", "status", "started_at", "lease_until"}
    for old, new in zip(before["jobs"], after["jobs"], strict=True):
        assert {k: v for k, v in new.items() if k not in shared_queue} == {
            k: v for k, v in old.items() if k not in shared_queue
        }
        if old["id"] not in {*source.queued, source.sent_job, source.marked_running}:
            assert new == old  # finished jobs are copied as they are
    jobs = {row["id"]: row for row in after["jobs"]}
    # Sent before the stop: running with a lease that is over, so the first process that runs
    # jobs reports it interrupted (possibly billed) instead of sending it again.
    sent = jobs[source.sent_job]
    assert sent["status"] is JobStatus.RUNNING and sent["started_at"] == source.sent_at
    assert sent["lease_until"] is not None and sent["lease_until"] <= datetime.now(UTC)
    older = jobs[source.marked_running]
    assert older["status"] is JobStatus.RUNNING and older["lease_until"] == sent["lease_until"]
    # The queued jobs wait in the fair order: guild A's member 1 and member 2 take turns, guild B
    # and the direct message wait one turn.
    a1, a2, b1, c1, dm = (jobs[job_id] for job_id in source.queued)
    assert {row["lane"] for row in (a1, a2, b1, c1, dm)} == {"default"}
    # (bot.jobs.claims keys: the lower runs first; guilds B, C and the DM join A's first round.)
    assert a1["fair_round"] < b1["fair_round"] < a2["fair_round"]
    assert c1["fair_round"] < a2["fair_round"] and dm["fair_round"] < a2["fair_round"]
    assert all(row["status"] is JobStatus.QUEUED for row in (a1, a2, b1, c1, dm))

    # The bot on PostgreSQL writes new rows with ids after the copied ones.
    engine = create_engine(postgres_url)
    try:
        sessions = create_sessionmaker(engine)
        async with sessions() as session, session.begin():
            job = store.new_job(order("new"), origin(1), "dall-e-2", 0, "imagine")
            session.add(job)
            await session.flush()
            session.add(
                JobImage(job_id=job.id, role=ImageRole.INPUT, position=0, mime_type="", data=b"x")
            )
            session.add(
                Intake(
                    interaction_id=9002,
                    interaction_at=datetime.now(UTC),
                    user_id=1,
                    command="imagine",
                    request="{}",
                )
            )
            await session.flush()
        assert job.id == max(jobs) + 1
        async with sessions() as session:
            images = (await session.execute(select(JobImage.id))).scalars().all()
            intakes = (await session.execute(select(Intake.id))).scalars().all()
        assert max(images) == max(row["id"] for row in before["job_images"]) + 1
        assert max(intakes) == max(row["id"] for row in before["intakes"]) + 1

        # The first process that runs jobs reports the two as interrupted, once, possibly billed.
        reaper = Leases(sessions, ProcessInfo(role="worker"), lease_seconds=60)
        reaped = await reaper.reap_once()
        assert sorted(job.id for job in reaped) == sorted([source.sent_job, source.marked_running])
        assert all(job.status is JobStatus.INTERRUPTED and job.possibly_billed for job in reaped)
        assert await reaper.reap_once() == []
    finally:
        await engine.dispose()


async def test_images_cross_in_small_batches_whatever_the_tables_size(
    tmp_path: Path, postgres_url: str
) -> None:
    """64 stored images of 512 KB (32 MB): the copy never holds more than a few batches."""
    source = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
    target = create_engine(postgres_url)
    try:
        await upgrade_database(source)
        sessions = create_sessionmaker(source)
        async with sessions() as session, session.begin():
            job = store.new_job(order("big"), origin(1), "dall-e-2", 0, "imagine")
            session.add(job)
            await session.flush()
            for position in range(64):
                data = os.urandom(512 * 1024)
                image = JobImage(job_id=job.id, role=ImageRole.OUTPUT, position=position)
                image.mime_type, image.data = "image/png", data
                session.add(image)
        tracemalloc.start()
        try:
            report = await copy_database(source, target, Carried())
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert ("job_images", 64) in report.tables
        assert peak < 32 * 1024 * 1024 / 2
        async with target.connect() as connection:
            sizes = await connection.execute(select(func.length(JobImage.data)))
            assert set(sizes.scalars()) == {512 * 1024}
    finally:
        await source.dispose()
        await target.dispose()


# --- refusals ----------------------------------------------------------------------------------


@pytest.fixture
async def empty_source(tmp_path: Path) -> Path:
    """The config of a migrated SQLite database with no rows (what a new bot has)."""
    settings = Settings()
    url = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    settings = dataclasses.replace(
        settings,
        database=dataclasses.replace(settings.database, url=url),
        storage=StorageSettings(spool_dir=str(tmp_path / "spool")),
    )
    engine = create_engine(url)
    await upgrade_database(engine)
    await engine.dispose()
    return write_config(tmp_path, settings)


async def test_a_target_a_bot_already_used_is_refused_and_left_alone(
    empty_source: Path, postgres_url: str
) -> None:
    engine = create_engine(postgres_url)
    await upgrade_database(engine)
    await user_salt(create_sessionmaker(engine))
    await engine.dispose()
    code, _, err = await copy(empty_source, "--to", postgres_url)
    assert code == 2
    assert "already has rows (installation: 1)" in err and "new, empty database" in err
    assert len((await all_rows(postgres_url))["installation"]) == 1


async def test_a_target_at_another_revision_is_refused(
    empty_source: Path, postgres_url: str
) -> None:
    engine = create_engine(postgres_url)
    await upgrade_database(engine, "0005")
    await engine.dispose()
    code, _, err = await copy(empty_source, "--to", postgres_url)
    assert code == 2
    assert f"is at revision 0005, not {HEAD}" in err


async def test_a_target_with_other_tables_is_refused(
    empty_source: Path, postgres_url: str, postgres_server: PostgresServer
) -> None:
    database = postgres_url.rsplit("/", 1)[1]
    postgres_server.psql("CREATE TABLE invoices (id int)", database=database)
    code, _, err = await copy(empty_source, "--to", postgres_url)
    assert code == 2
    assert "is not empty (it has tables: invoices)" in err


async def test_a_source_behind_the_latest_migration_names_db_upgrade(
    tmp_path: Path, postgres_url: str
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    await upgrade_database(engine, "0006")
    await engine.dispose()
    code, _, err = await copy(no_database_config(tmp_path), "--from", url, "--to", postgres_url)
    assert code == 2
    assert f"is at revision 0006, not the latest ({HEAD})" in err
    assert "python -m bot db upgrade" in err


def no_database_config(tmp_path: Path) -> Path:
    """A config naming no database: the copy's --from says which."""
    config = tmp_path / "config.toml"
    config.write_text(f'[storage]\nspool_dir = "{tmp_path / "spool"}"\n', encoding="utf-8")
    return config


async def test_a_missing_source_is_refused_and_not_created(
    tmp_path: Path, postgres_url: str
) -> None:
    missing = tmp_path / "nowhere" / "bot.db"
    url = f"sqlite+aiosqlite:///{missing}"
    code, _, err = await copy(no_database_config(tmp_path), "--from", url, "--to", postgres_url)
    assert code == 2 and f"there is no database at {missing}" in err
    assert not missing.exists() and not missing.parent.exists()


async def test_results_kept_on_disk_refuse_the_copy_until_the_bot_recorded_them(
    empty_source: Path, tmp_path: Path, postgres_url: str
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "job-3.json").write_text("{}", encoding="utf-8")
    code, _, err = await copy(empty_source, "--to", postgres_url)
    assert code == 2
    assert f"results are kept on disk in {spool}" in err and "start the bot once" in err


async def test_the_target_must_be_postgresql(empty_source: Path, tmp_path: Path) -> None:
    code, _, err = await copy(empty_source, "--to", f"sqlite+aiosqlite:///{tmp_path / 'b.db'}")
    assert code == 2 and "is not PostgreSQL" in err


async def test_an_unreachable_target_fails_without_showing_its_password(
    empty_source: Path, postgres_server: PostgresServer
) -> None:
    from bot.testing.postgres import free_port

    url = f"postgresql+asyncpg://imagebot:{PASSWORD}@127.0.0.1:{free_port()}/imagebot"
    code, out, err = await copy(empty_source, "--to", url)
    assert code == 1
    assert PASSWORD not in out + err
    assert "imagebot:***@127.0.0.1" in out
    assert "the copy failed, nothing was committed" in err and "Traceback" not in err


async def test_the_help_says_to_stop_the_bot_and_how_to_keep_the_password_out() -> None:
    code, out, _ = await run_cli("db", "copy", "--help")
    assert code == 0
    assert "Stop the bot first" in " ".join(out.split()) and "PGPASSWORD" in out
    code, _, err = await run_cli("db", "copy")
    assert code == 2 and "--to" in err


async def test_a_url_that_is_no_database_url_is_one_line(empty_source: Path) -> None:
    code, out, err = await copy(empty_source, "--to", f"imagebot:{PASSWORD}@db/imagebot")
    assert code == 2 and out == ""
    assert err.strip() == (
        "error: --to is not a database URL (e.g. postgresql+asyncpg://USER@HOST/DB)"
    )
