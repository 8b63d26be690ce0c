"""Database errors never carry the values of the statement that failed (tokens, prompts), on
either engine; and what SQLite needs of its file (WAL, incremental vacuum)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from bot.db import create_engine, create_sessionmaker, upgrade_database
from bot.db.models import Intake, utcnow

TOKEN = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5MDEyMzQ1Njc4OmZha2UtdG9rZW4tdmFsdWU"


async def test_a_failed_write_names_no_value_of_the_row(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await upgrade_database(engine)
        sessions = create_sessionmaker(engine)

        def intake() -> Intake:
            return Intake(
                interaction_id=1,
                interaction_token=TOKEN,
                interaction_at=utcnow(),
                user_id=2,
                command="imagine",
                request="{}",
            )

        async with sessions() as session, session.begin():
            session.add(intake())
        with pytest.raises(IntegrityError) as caught:  # the same interaction twice
            async with sessions() as session, session.begin():
                session.add(intake())
        assert TOKEN not in str(caught.value)
        assert "hidden" in str(caught.value)  # SQLAlchemy says the parameters were left out
    finally:
        await engine.dispose()


async def test_sqlite_a_new_connection_reads_while_another_process_holds_the_write_lock(
    tmp_path: Path,
) -> None:
    """WAL promises readers never wait for the writer: opening a connection must not write."""
    path = tmp_path / "bot.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        await upgrade_database(engine)
    finally:
        await engine.dispose()
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    engine = create_engine(f"sqlite+aiosqlite:///{path}", busy_timeout=0.1)
    try:
        async with engine.connect() as connection:  # a fresh connection, its pragmas run now
            version = await connection.exec_driver_sql("SELECT version_num FROM alembic_version")
            assert version.scalar()
    finally:
        locker.rollback()
        locker.close()
        await engine.dispose()


async def test_sqlite_a_new_database_file_gets_wal_and_incremental_vacuum(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'new.db'}")
    try:
        await upgrade_database(engine)
        async with engine.connect() as connection:
            assert (await connection.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
            assert (await connection.exec_driver_sql("PRAGMA auto_vacuum")).scalar() == 2
    finally:
        await engine.dispose()
