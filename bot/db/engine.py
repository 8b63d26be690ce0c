"""Engine and session factory, created once by the entry point and passed to whoever needs them.

SQLite gets WAL (readers never block the single writer), foreign keys (off by default in SQLite)
and a busy timeout; the parent folder of the database file is created so the default URL works
on a fresh machine. Nothing here is SQLite-only in effect: other backends skip these steps.

SQLite also gets ``auto_vacuum=INCREMENTAL``, so the pages pruned images free can be handed back
to the file system (:func:`give_back_space`); without it a SQLite file never shrinks. The mode
takes effect only in a new file or after one VACUUM: :func:`enable_incremental_vacuum` converts
an older database once, at start.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
)
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine

#: The session factory every repository function takes: one short session per unit of work.
Sessions = async_sessionmaker[AsyncSession]

T = TypeVar("T")


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL, or None for in-memory and non-SQLite databases."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        return None
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def create_engine(url: str, *, echo: bool = False, busy_timeout: float = 30.0) -> AsyncEngine:
    """``busy_timeout``: seconds a SQLite write waits for another writer before it fails."""
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    # hide_parameters: a database error's message would otherwise carry the statement's values
    # (interaction tokens, prompts) into logs and error reports.
    engine = _create_async_engine(url, echo=echo, pool_pre_ping=path is None, hide_parameters=True)
    if make_url(url).drivername.startswith("sqlite"):
        pragmas = functools.partial(_sqlite_pragmas, busy_ms=int(busy_timeout * 1000))
        event.listen(engine.sync_engine, "connect", pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any, *, busy_ms: int) -> None:
    """Set each connection up without writing: WAL lets readers in while another process
    holds the write lock, so opening a connection must not need that lock itself. Setting
    ``auto_vacuum`` or ``journal_mode`` writes the file header, so they are only set when the
    file does not have them yet (a new file; older files are converted once at start)."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={busy_ms:d}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # auto_vacuum first: on a new file it must come before the first table.
        cursor.execute("PRAGMA page_count")
        if cursor.fetchone()[0] == 0:
            cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")
        cursor.execute("PRAGMA journal_mode")
        if cursor.fetchone()[0] != "wal":
            cursor.execute("PRAGMA journal_mode=WAL")
    finally:
        cursor.close()


#: ``PRAGMA auto_vacuum`` answers 2 for INCREMENTAL.
_INCREMENTAL = 2


async def enable_incremental_vacuum(engine: AsyncEngine) -> bool:
    """Convert an older SQLite database to incremental vacuum; True when it had to be done.

    A VACUUM rewrites the whole file (it needs as much free disk as the database takes) and
    cannot run inside a transaction, so it runs on its own connection, once: afterwards the
    mode is stored in the file.
    """
    if engine.dialect.name != "sqlite":
        return False
    async with engine.connect() as connection:
        mode = (await connection.exec_driver_sql("PRAGMA auto_vacuum")).scalar()
        await connection.commit()
        if mode == _INCREMENTAL:
            return False
        await _script(connection, "PRAGMA auto_vacuum=INCREMENTAL; VACUUM;")
    return True


async def give_back_space(engine: AsyncEngine) -> None:
    """Return SQLite's free pages to the file system (after images were deleted)."""
    if engine.dialect.name != "sqlite":
        return  # PostgreSQL reuses the space of deleted rows through its autovacuum
    async with engine.connect() as connection:
        await _script(connection, "PRAGMA incremental_vacuum; PRAGMA wal_checkpoint(TRUNCATE);")


async def _script(connection: AsyncConnection, sql: str) -> None:
    """Run SQLite statements to completion, outside any transaction.

    ``executescript`` because Python's ``execute`` steps a statement once, and one step of
    ``incremental_vacuum`` frees a single page.
    """
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None, "a connection of the pool always has its driver connection"
    await driver.executescript(sql)


def create_sessionmaker(engine: AsyncEngine) -> Sessions:
    """One session per unit of work; objects stay usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


@dataclass(frozen=True)
class Storage:
    """The database as the rest of the bot sees it: an engine and a session factory."""

    engine: AsyncEngine
    sessions: Sessions


async def finish_even_if_cancelled(work: Awaitable[T]) -> T:
    """Await ``work`` to its end even when the caller is cancelled, then pass the cancel on.

    A database call cut off by a cancel leaves its pooled connection unreturned (SQLAlchemy
    logs a traceback when it is collected); background passes that are stopped at shutdown
    finish the pass they are in instead, which takes moments.
    """
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise
