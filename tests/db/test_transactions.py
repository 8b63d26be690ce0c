"""The hot path's transactions (bot.db.engine.Transactions): a unit of work commits whole or
not at all, on either engine; on a SQLite file it runs in the event loop without ever blocking
it on the database's lock, and fails as a locked database does past the busy timeout."""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from bot.db import create_engine, create_sessionmaker, upgrade_database
from bot.db import engine as engine_module
from bot.db.engine import Storage, create_transactions
from bot.db.models import Intake, utcnow


def _intake(interaction_id: int, padding: int = 0) -> Intake:
    return Intake(
        interaction_id=interaction_id,
        interaction_token="token",
        interaction_at=utcnow(),
        user_id=2,
        command="imagine",
        request=json.dumps({"padding": "x" * padding}),
    )


async def _intakes(storage: Storage) -> int:
    async with storage.sessions() as session:
        return int((await session.execute(select(func.count()).select_from(Intake))).scalar_one())


async def test_a_unit_of_work_commits_whole_or_not_at_all(storage: Storage) -> None:
    def two(session: Session) -> int:
        session.add_all([_intake(1), _intake(2)])
        session.flush()
        return 2

    assert await storage.transactions.run(two) == 2
    assert await _intakes(storage) == 2

    def half(session: Session) -> None:
        session.add(_intake(3))
        session.flush()
        raise RuntimeError("refused after the first insert")

    with pytest.raises(RuntimeError):
        await storage.transactions.run(half)
    assert await _intakes(storage) == 2  # the first insert went with the refusal


async def test_sqlite_a_held_write_lock_is_waited_for_without_blocking_the_loop(
    tmp_path: Path,
) -> None:
    """Another connection writes: the unit of work waits asynchronously (the loop goes on),
    runs once the lock is free, and runs on the loop's own thread (no hop to another)."""
    storage_url = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    async with _storage(storage_url, busy_timeout=5) as storage:
        locker = sqlite3.connect(tmp_path / "bot.db", isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")
        threads: list[int] = []

        def one(session: Session) -> None:
            threads.append(threading.get_ident())
            session.add(_intake(10))

        task = asyncio.create_task(storage.transactions.run(one))
        ticks = 0
        for _ in range(20):  # the loop is free meanwhile
            await asyncio.sleep(0.005)
            ticks += 1
        assert ticks == 20 and not task.done() and threads == []
        locker.rollback()
        await asyncio.wait_for(task, 5)
        locker.close()
        assert threads == [threading.get_ident()]
        assert await _intakes(storage) == 1


async def test_sqlite_a_lock_held_past_the_busy_timeout_fails_as_locked_and_writes_nothing(
    tmp_path: Path,
) -> None:
    storage_url = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    async with _storage(storage_url, busy_timeout=0.2) as storage:
        locker = sqlite3.connect(tmp_path / "bot.db", isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        ran: list[int] = []

        def one(session: Session) -> None:
            ran.append(1)
            session.add(_intake(11))

        began = time.monotonic()
        with pytest.raises(OperationalError, match="locked"):
            await storage.transactions.run(one)
        assert 0.15 < time.monotonic() - began < 2
        locker.rollback()
        locker.close()
        assert ran == [] and await _intakes(storage) == 0
        # and a cancel while it waits leaves nothing half-way either
        locker = sqlite3.connect(tmp_path / "bot.db", isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")
        task = asyncio.create_task(storage.transactions.run(one))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        locker.rollback()
        locker.close()
        assert ran == [] and await _intakes(storage) == 0


async def test_sqlite_the_write_ahead_log_is_copied_back_in_a_thread_never_in_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint takes 20-40 ms for SQLite's default 1,000 pages: the connection whose
    commit filled the log would run it right in the event loop. Here none of the loop's
    commits does; every CHECKPOINT_EVERY commits a thread copies the log back."""
    monkeypatch.setattr(engine_module, "CHECKPOINT_EVERY", 50)
    storage_url = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    checkpoints: list[int] = []
    real = engine_module._checkpoint

    def watched(path: Path) -> None:
        checkpoints.append(threading.get_ident())
        real(path)

    monkeypatch.setattr(engine_module, "_checkpoint", watched)
    async with _storage(storage_url, busy_timeout=5) as storage:
        wal = tmp_path / "bot.db-wal"
        sizes: list[int] = []
        ids = itertools.count(100)

        def many(session: Session) -> None:
            # ~30 pages a commit: 49 commits fill far more than SQLite's 1,000-page threshold
            session.add_all(_intake(next(ids), padding=12_000) for _ in range(10))

        for _ in range(3):
            for _ in range(49):
                await storage.transactions.run(many)
            sizes.append(_wal_pages(wal))
            await storage.transactions.run(many)  # the 50th: a checkpoint starts in a thread
            await asyncio.sleep(0.2)
        # No checkpoint in the loop: the log grew past 1,000 pages (a checkpoint at 1,000 would
        # have started it over); after each thread's checkpoint it started over, not grown on.
        assert sizes[0] > 1_300 and max(sizes) < sizes[0] * 1.3
        assert len(checkpoints) == 3 and threading.get_ident() not in checkpoints


def _wal_pages(wal: Path) -> int:
    """Pages the write-ahead log file holds (its header is 32 bytes, each frame's 24)."""
    return (wal.stat().st_size - 32) // (4096 + 24)


@asynccontextmanager
async def _storage(url: str, busy_timeout: float) -> AsyncIterator[Storage]:
    engine = create_engine(url)
    await upgrade_database(engine)
    sessions = create_sessionmaker(engine)
    transactions = create_transactions(sessions, url, busy_timeout=busy_timeout)
    try:
        yield Storage(engine, sessions, transactions)
    finally:
        await transactions.aclose()
        await engine.dispose()
