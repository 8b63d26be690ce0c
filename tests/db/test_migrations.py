"""The schema comes from migrations only, and matches the models the code uses, on SQLite and
on PostgreSQL: from an empty database, and from every earlier revision with its rows kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, insert, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db import Base, Job, JobStatus, create_engine, create_sessionmaker, upgrade_database
from bot.db.migrate import alembic_config, pending_revisions

REVISIONS = [
    script.revision
    for script in reversed(list(ScriptDirectory.from_config(alembic_config()).walk_revisions()))
]
BIG = 1_234_567_890_123_456_789  # Discord snowflakes need 64 bits
AT = datetime(2026, 11, 21, 12, 30, 15, 250_000, tzinfo=UTC)

#: A row of every table, with a value for every column it ever had: each revision's rows are
#: the columns it has (ids and foreign keys are filled in as the rows are written).
SAMPLES: dict[str, dict[str, Any]] = {
    "jobs": {
        "guild_id": BIG,
        "channel_id": BIG + 1,
        "user_id": BIG + 2,
        "operation": "edit",
        "model": "dall-e-2",
        "prompt": "a red kite über the sea",
        "size": "512x512",
        "quality": "standard",
        "n_requested": 2,
        "n_delivered": 2,
        "status": "delivered",
        "error_code": None,
        "input_tokens": 10,
        "output_tokens": 20,
        "cost_micro_usd": 40_000,
        "queued_at": AT,
        "started_at": AT + timedelta(seconds=1),
        "finished_at": AT + timedelta(seconds=5),
        "style": "vivid",
        "background": "auto",
        "fit": "crop",
        "locale": "de",
        "source_index": 1,
        "application_id": BIG + 3,
        "interaction_token": "aW50ZXJhY3Rpb24",
        "interaction_at": AT,
        "attachment_size_limit": 10 * 1024 * 1024,
        "result_channel_id": BIG + 4,
        "result_message_id": BIG + 5,
        "error_message": "a note",
        "n_charged": 2,
        "command": "imagine",
        "revised_prompt": "a red kite flying over the sea",
        "possibly_billed": True,
        "parent_channel_id": BIG + 6,
        "pruned_at": AT + timedelta(days=30),
        "backend": "default",
        "negative_prompt": "blurry",
        "seed": 2**40 + 7,
        "steps": 20,
        "guidance": 7.5,
        "sampler": "Euler a",
        "checkpoint": "sd_xl_base_1.0.safetensors [31e35c80fc]",
    },
    "job_images": {
        "role": "output",
        "position": 0,
        "mime_type": "image/png",
        "data": b"\x89PNG\r\n\x1a\n\x00\xff" * 100,
        "seed": 2**40 + 8,
    },
    "guild_settings": {
        "guild_id": BIG,
        "images_per_day": 5,
        "images_per_month": 100,
        "spend_per_month_micro": 5_000_000,
        "member_images_per_day": 2,
        "timezone": "Europe/Berlin",
        "allowed_channels": f"{BIG + 1} {BIG + 9}",
        "lock_version": 3,
        "backend": "default",
    },
    "role_limits": {"guild_id": BIG, "role_id": BIG + 7, "images_per_day": 4, "exempt": True},
    "member_resets": {"guild_id": BIG, "user_id": BIG + 2, "reset_at": AT - timedelta(days=1)},
    "intakes": {
        "interaction_id": BIG + 8,
        "application_id": BIG + 3,
        "interaction_token": "aW50ZXJhY3Rpb24y",
        "interaction_at": AT,
        "guild_id": BIG,
        "channel_id": BIG + 1,
        "parent_channel_id": None,
        "user_id": BIG + 2,
        "locale": "de",
        "command": "imagine",
        "request": '{"prompt": "a kite"}',
    },
    "job_messages": {"position": 0, "channel_id": BIG + 4, "message_id": BIG + 5},
    "installation": {"key": "user_salt", "value": "5a1t"},
    "usage_counters": {
        "scope": "guild",
        "guild_id": BIG + 10,
        "user_id": 0,
        "period": "2026-10",
        "images": 3,
        "spend_micro": 60_000,
    },
}
#: The columns that find a sample row again after the upgrade.
FINDS = {
    "jobs": ("operation",),
    "job_images": ("position",),
    "guild_settings": ("guild_id",),
    "role_limits": ("role_id",),
    "member_resets": ("user_id",),
    "intakes": ("interaction_id",),
    "job_messages": ("message_id",),
    "installation": ("key",),
    "usage_counters": ("guild_id", "period"),
}
#: The second job varies the first (a foreign key to its own table).
VARIATION = {"operation": "vary", "status": "queued", "n_charged": 1, "command": "vary"}


def schema_diff(connection: Connection) -> list[object]:
    """What Alembic's autogenerate would change to make the database match the models."""
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def write_samples(connection: Connection) -> dict[str, list[dict[str, Any]]]:
    """A row of each table the database has now (its columns only); the rows written."""
    meta = MetaData()
    meta.reflect(connection)
    written: dict[str, list[dict[str, Any]]] = {}
    job_ids: list[int] = []
    for table in meta.sorted_tables:
        if table.name not in SAMPLES:
            continue
        samples = [SAMPLES[table.name]]
        if table.name == "jobs":
            samples.append({**SAMPLES["jobs"], **VARIATION})
        for sample in samples:
            row = {name: value for name, value in sample.items() if name in table.c}
            if "job_id" in table.c:
                row["job_id"] = job_ids[0]
            if table.name == "jobs" and job_ids and "source_job_id" in table.c:
                row["source_job_id"] = job_ids[0]
            result = connection.execute(insert(table).values(row))
            if table.name == "jobs":
                job_ids.append(result.inserted_primary_key[0])
            written.setdefault(table.name, []).append(row)
    return written


def read_back(connection: Connection, table_name: str, row: dict[str, Any]) -> dict[str, Any]:
    """``row``'s columns as the models read them now (aware datetimes, enums as values)."""
    table = Base.metadata.tables[table_name]
    query = select(*(table.c[name] for name in row)).where(
        *(table.c[name] == row[name] for name in FINDS[table_name])
    )
    found = connection.execute(query).mappings().one()
    return {name: _plain(value) for name, value in found.items()}


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, JobStatus) else value


async def test_upgrade_from_empty_applies_every_revision_once(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        assert await pending_revisions(engine) == REVISIONS
        await upgrade_database(engine)
        assert await pending_revisions(engine) == []
        await upgrade_database(engine)  # a second run is a no-op
        async with engine.connect() as conn:
            assert await conn.run_sync(schema_diff) == []
    finally:
        await engine.dispose()


@pytest.mark.parametrize("revision", REVISIONS[:-1])
async def test_an_upgrade_from_each_revision_keeps_its_rows_and_ends_at_the_models(
    database_url: str, revision: str
) -> None:
    engine = create_engine(database_url)
    try:
        await upgrade_database(engine, revision)
        async with engine.begin() as conn:
            written = await conn.run_sync(write_samples)
        assert "jobs" in written
        await upgrade_database(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(schema_diff) == []
            for table_name, rows in written.items():
                for row in rows:
                    assert await conn.run_sync(read_back, table_name, row) == row, table_name
        await _a_new_job_gets_a_new_id(engine)
    finally:
        await engine.dispose()


async def _a_new_job_gets_a_new_id(engine: AsyncEngine) -> None:
    """Rows written before the upgrade leave the id sequence where it can go on."""
    sessions = create_sessionmaker(engine)
    async with sessions() as session, session.begin():
        job = Job(operation="generate", model="dall-e-2", prompt="new", guild_id=BIG)
        session.add(job)
    async with sessions() as session:
        ids = (await session.execute(select(Job.id).order_by(Job.id))).scalars().all()
    assert ids[-1] == job.id and len(set(ids)) == len(ids) >= 3


async def test_sqlite_first_run_creates_the_file_its_folder_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "data" / "bot.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        await upgrade_database(engine)
        assert path.is_file()
        async with engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
    finally:
        await engine.dispose()


async def test_jobs_round_trip(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await upgrade_database(engine)
        sessions = create_sessionmaker(engine)
        async with sessions() as session, session.begin():
            session.add(
                Job(
                    guild_id=BIG,
                    user_id=BIG,
                    operation="generate",
                    model="dall-e-2",
                    prompt="a cat",
                    n_requested=2,
                    queued_at=AT.astimezone(timezone(timedelta(hours=-5))),  # stored as UTC
                )
            )
        async with sessions() as session:
            job = (await session.execute(select(Job))).scalar_one()
        assert job.guild_id == BIG
        assert job.status is JobStatus.QUEUED
        assert job.n_delivered == 0 and job.cost_micro_usd == 0
        assert job.queued_at == AT and job.queued_at.utcoffset() == timedelta(0)
    finally:
        await engine.dispose()
