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
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, event
from sqlalchemy import create_engine as _create_sync_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
)
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

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


class Transactions:
    """Runs a unit of work written as a function of a synchronous :class:`Session` in one
    transaction: the hot path's writes (a job's admission, its result, the intakes).

    Why: through aiosqlite each statement costs three or four hops to its thread and back
    (cursor, execute, fetch, close), about 0.35 ms of CPU, where sqlite3 itself takes
    microseconds; and in a thread of its own the same work waits for the interpreter's lock
    while the event loop is busy (a burst of 200 requests made each admission take 10 ms).
    So on a SQLite file the work runs right in the event loop, on a synchronous engine over
    the same file, and never waits for a lock there: it starts with ``BEGIN IMMEDIATE``
    (the write lock, or SQLITE_BUSY at once: its busy timeout is 0), and while another
    connection holds the lock it waits asynchronously and tries again, up to the database's
    busy timeout, then fails as a locked database does. Holding the write lock in WAL mode,
    nothing it runs waits for another connection. Elsewhere (PostgreSQL, in-memory SQLite)
    it runs on an async session through ``run_sync``: the same code, at the driver's cost.

    One thing SQLite would otherwise do in the loop: copying the write-ahead log back into the
    database (a checkpoint, 20-40 ms for SQLite's default 1,000 pages), which the connection
    whose commit fills the log does. This engine's connections never do it; every
    :data:`CHECKPOINT_EVERY` commits a thread does, without holding up any writer.
    """

    def __init__(
        self,
        sessions: Sessions,
        sync_engine: Engine | None = None,
        busy_timeout: float = 30.0,
        path: Path | None = None,
    ) -> None:
        self._sessions = sessions
        self._engine = sync_engine
        self._sync_sessions = sessionmaker(sync_engine, expire_on_commit=False)
        self._busy_timeout = busy_timeout
        self._path = path
        self._commits = 0
        self._checkpoint: asyncio.Task[None] | None = None

    @property
    def engines(self) -> list[Engine]:
        """The synchronous engine, if any (to count or watch its SQL)."""
        return [self._engine] if self._engine is not None else []

    async def run(self, work: Callable[[Session], T]) -> T:
        """``work(session)`` in one transaction, committed when it returns; its result."""
        if self._engine is None:
            async with self._sessions() as session, session.begin():
                return await session.run_sync(work)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self._busy_timeout
        delay = LOCK_RETRY_FIRST
        while True:
            try:
                with self._sync_sessions() as sync, sync.begin():
                    sync.connection()  # BEGIN IMMEDIATE: the write lock, before any work
                    done = work(sync)
                self._committed()
                return done
            except OperationalError as exc:
                if not _lock_taken(exc) or loop.time() + delay > give_up:
                    raise
            await asyncio.sleep(delay)  # another connection writes: let it finish
            delay = min(delay * 2, LOCK_RETRY_MOST)

    def _committed(self) -> None:
        self._commits += 1
        if self._path is None or self._commits % CHECKPOINT_EVERY:
            return
        if self._checkpoint is None or self._checkpoint.done():
            self._checkpoint = asyncio.ensure_future(asyncio.to_thread(_checkpoint, self._path))

    async def aclose(self) -> None:
        """Wait for a checkpoint under way, close the engine's connections."""
        if self._checkpoint is not None:
            await asyncio.gather(self._checkpoint, return_exceptions=True)
        if self._engine is not None:
            self._engine.dispose()


#: Commits on the event loop between two checkpoints of the write-ahead log (a few pages each).
CHECKPOINT_EVERY = 100


def _checkpoint(path: Path) -> None:
    """Copy what it can of the write-ahead log into the database (PASSIVE: waits for no reader
    or writer; what it cannot copy yet waits for the next)."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
    except sqlite3.Error as exc:  # the next one tries again; SQLite's own ones go on too
        log.warning("write-ahead log not checkpointed: %s", exc)
    finally:
        connection.close()


#: Seconds between two tries for SQLite's write lock: doubling from the first to the most.
LOCK_RETRY_FIRST = 0.001
LOCK_RETRY_MOST = 0.02
_BEGIN = "BEGIN IMMEDIATE"
#: SQLite's result code for a lock another connection holds.
_SQLITE_BUSY = 5


def _lock_taken(exc: OperationalError) -> bool:
    """The write lock was held by another connection when the transaction began (nothing of
    the unit of work ran: it may simply be tried again)."""
    code = getattr(exc.orig, "sqlite_errorcode", None)
    return exc.statement == _BEGIN and code is not None and code & 0xFF == _SQLITE_BUSY


def create_transactions(
    sessions: Sessions, url: str, *, busy_timeout: float = 30.0
) -> Transactions:
    """The hot path's :class:`Transactions` for the database at ``url`` (a synchronous engine
    for a SQLite file; the async sessions elsewhere)."""
    path = sqlite_path(url)
    if path is None:
        return Transactions(sessions)
    engine = _create_sync_engine(f"sqlite:///{path}", hide_parameters=True)
    # Never waits in the event loop: a lock held elsewhere fails BEGIN at once (see run).
    event.listen(engine, "connect", functools.partial(_sqlite_pragmas, busy_ms=0))
    event.listen(engine, "connect", _own_transactions)
    event.listen(engine, "begin", _begin_immediate)
    return Transactions(sessions, engine, busy_timeout, path)


def _own_transactions(dbapi_connection: Any, _record: Any) -> None:
    """sqlite3 begins its own transactions only before a write: here SQLAlchemy's begin does,
    with the write lock first (SQLAlchemy's documented recipe for pysqlite). No checkpoint
    in the event loop: see :class:`Transactions`."""
    dbapi_connection.isolation_level = None
    dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")


def _begin_immediate(connection: Connection) -> None:
    connection.exec_driver_sql(_BEGIN)


@dataclass(frozen=True)
class Storage:
    """The database as the rest of the bot sees it: an engine, a session factory, and the
    hot path's transactions (by default on the sessions; see :func:`create_transactions`)."""

    engine: AsyncEngine
    sessions: Sessions
    transactions: Transactions = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.transactions is None:
            object.__setattr__(self, "transactions", Transactions(self.sessions))

    @property
    def sync_engines(self) -> list[Engine]:
        """Every synchronous engine that runs this storage's SQL (to count or watch it)."""
        return [self.engine.sync_engine, *self.transactions.engines]


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
