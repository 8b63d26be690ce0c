"""The schema comes from migrations only, and matches the models the code uses."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select, text
from sqlalchemy.engine import Connection

from bot.db import Base, Job, JobStatus, create_engine, create_sessionmaker, upgrade_database
from bot.db.migrate import pending_revisions


async def test_first_run_creates_the_file_and_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "data" / "bot.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        assert await pending_revisions(engine) == [
            "0001",
            "0002",
            "0003",
            "0004",
            "0005",
            "0006",
            "0007",
            "0008",
        ]
        await upgrade_database(engine)
        assert path.is_file()
        assert await pending_revisions(engine) == []
        await upgrade_database(engine)  # a second run is a no-op
        async with engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
    finally:
        await engine.dispose()


async def test_models_match_the_migrated_schema(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
    try:
        await upgrade_database(engine)

        def diff(connection: Connection) -> list[object]:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))

        async with engine.connect() as conn:
            assert await conn.run_sync(diff) == []
    finally:
        await engine.dispose()


async def test_jobs_round_trip(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
    try:
        await upgrade_database(engine)
        sessions = create_sessionmaker(engine)
        big_id = 1_234_567_890_123_456_789  # Discord snowflakes need 64 bits
        async with sessions() as session, session.begin():
            session.add(
                Job(
                    guild_id=big_id,
                    user_id=big_id,
                    operation="generate",
                    model="dall-e-2",
                    prompt="a cat",
                    n_requested=2,
                )
            )
        async with sessions() as session:
            job = (await session.execute(select(Job))).scalar_one()
        assert job.guild_id == big_id
        assert job.status is JobStatus.QUEUED
        assert job.n_delivered == 0 and job.cost_micro_usd == 0
        assert job.queued_at.tzinfo is not None or job.queued_at is not None
    finally:
        await engine.dispose()
