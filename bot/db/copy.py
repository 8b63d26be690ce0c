"""Copy a stopped bot's SQLite database into a new PostgreSQL database (``python -m bot db copy``).

Why a command of our own rather than a generic dump tool: the copy must go through the models'
column types (SQLite stores timestamps without a zone, booleans as integers, enums as text), in
foreign-key order, with PostgreSQL's id sequences moved past the copied ids, and it must carry
over what the SQLite bot keeps outside its tables (see :class:`Carried`).

The target is migrated to the latest revision first and must be empty: a copy never merges into
a database a bot already uses. Everything is copied in one transaction on the target, so a copy
that fails leaves it migrated and empty, ready for another try. Rows are read and written in
batches (:func:`batch_rows`): a table of images, megabytes a row, never sits in memory whole.

The SQLite bot keeps the queue's state in two places besides the rows, and the copy turns it into
what the shared queue on PostgreSQL reads:

- a job whose request went to the provider before the stop is still ``queued`` in its row, and
  listed in the started-jobs journal (bot.jobs.journal). Copied as queued it would run again and
  be billed twice; it is copied as ``running`` with an expired lease, so the first process that
  runs jobs reports it interrupted (possibly billed, its requester told once), as the SQLite
  bot's own restart would have. A ``running`` row left by an older version gets the same lease.
- queued jobs have no place in the shared queue's fair order yet (lane and round): the caller
  (bot.ops.dbcopy) gives them one with bot.jobs.claims.enqueue_unkeyed, the order an admission
  gives, which this package cannot import.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Table, bindparam, func, inspect, select, text, update
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.types import LargeBinary

from bot.db.migrate import alembic_config, upgrade_database
from bot.db.models import Base, Job, JobStatus
from bot.errors import UsageError

#: Rows per batch: a few for tables holding images (a row can be megabytes), more for the rest.
IMAGE_BATCH_ROWS = 8
BATCH_ROWS = 1000

JOBS: Table = Base.metadata.tables[Job.__tablename__]


#: The copy would lose or mix data; the message says what to do instead. An operator's
#: command, a usage error (exit 2): no member ever reads it, so it has no text of its own.
CopyRefused = UsageError


def shown(url: str) -> str:
    """``url`` as it may be printed: its password, if any, as ``***``."""
    return make_url(url).render_as_string(hide_password=True)


def batch_rows(table: Table) -> int:
    binary = any(isinstance(column.type, LargeBinary) for column in table.columns)
    return IMAGE_BATCH_ROWS if binary else BATCH_ROWS


@dataclass(frozen=True)
class Carried:
    """What the SQLite bot knew outside its rows, carried into the shared queue's columns."""

    #: Jobs the journal lists as sent to the provider, with when they started.
    sent: Mapping[int, datetime] = field(default_factory=dict)


@dataclass(frozen=True)
class CopyReport:
    #: Rows copied per table, in the order they were copied (every count verified).
    tables: list[tuple[str, int]]
    revision: str
    #: Queued jobs that wait in the shared queue.
    queued: int
    #: Jobs copied as running with an expired lease: reported interrupted by the first process
    #: that runs jobs (their requests may have reached the provider).
    interrupted: int


async def copy_database(
    source: AsyncEngine,
    target: AsyncEngine,
    carried: Carried,
    *,
    progress: Callable[[str, int], None] | None = None,
) -> CopyReport:
    """Copy every table of ``source`` into ``target`` (migrated here, empty); ``progress`` is
    told each table's name and rows once it is copied. Raises :class:`CopyRefused`."""
    if target.dialect.name != "postgresql":
        raise CopyRefused(
            f"the target {shown(str(target.url))} is not PostgreSQL: db copy moves a bot "
            "to PostgreSQL (a URL starting with postgresql+asyncpg://)"
        )
    head = _head()
    async with source.connect() as connection:
        at = await connection.run_sync(_current)
    if at != head:
        raise CopyRefused(_behind(str(source.url), at, head))
    await _prepare_target(target, head)
    tables: list[tuple[str, int]] = []
    async with source.connect() as reading, target.begin() as writing:
        for table in Base.metadata.sorted_tables:
            rows = await _copy_table(reading, writing, table)
            tables.append((table.name, rows))
            if progress is not None:
                progress(table.name, rows)
        interrupted = await _expire_sent(writing, carried.sent)
        queued = await _count_queued(writing)
        await _move_sequences(writing)
        await _verify(reading, writing, tables)
    return CopyReport(tables, head, queued, interrupted)


def _head() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the migrations have one head"
    return head


def _current(connection: Connection) -> str | None:
    heads = MigrationContext.configure(connection).get_current_heads()
    return heads[0] if heads else None


def _behind(url: str, at: str | None, head: str) -> str:
    if at is None:
        return f"{shown(url)} is not an imagebot database (no migrations applied)"
    return (
        f"{shown(url)} is at revision {at}, not the latest ({head}): run `python -m bot db "
        "upgrade` on it first (with [database] url pointing at it), then copy again"
    )


async def _prepare_target(target: AsyncEngine, head: str) -> None:
    """Migrate an empty target to ``head``; refuse one at another revision or with rows."""
    async with target.connect() as connection:
        at = await connection.run_sync(_current)
        if at is None:
            found = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
            if found:
                raise CopyRefused(
                    f"the target {shown(str(target.url))} is not empty (it has tables: "
                    f"{', '.join(sorted(found))}): copy into a new, empty database"
                )
    if at is None:
        await upgrade_database(target)
        return
    if at != head:
        raise CopyRefused(
            f"the target {shown(str(target.url))} is at revision {at}, not {head}: copy into "
            "a new, empty database"
        )
    async with target.connect() as connection:
        filled = [
            f"{table.name}: {rows}"
            for table in Base.metadata.sorted_tables
            if (rows := await _count(connection, table))
        ]
    if filled:
        raise CopyRefused(
            f"the target {shown(str(target.url))} already has rows ({', '.join(filled)}): a "
            "bot may have run on it; copy into a new, empty database"
        )


async def _count(connection: AsyncConnection, table: Table) -> int:
    return int((await connection.execute(select(func.count()).select_from(table))).scalar_one())


async def _copy_table(reading: AsyncConnection, writing: AsyncConnection, table: Table) -> int:
    """Stream ``table`` across in primary-key order (a job's source job is copied before it)."""
    result = await reading.stream(select(table).order_by(*table.primary_key.columns))
    copied = 0
    async for batch in result.partitions(batch_rows(table)):
        await writing.execute(table.insert(), [row._asdict() for row in batch])
        copied += len(batch)
    return copied


async def _expire_sent(writing: AsyncConnection, sent: Mapping[int, datetime]) -> int:
    """Jobs whose request may have reached the provider: running, with a lease that is over."""
    over = datetime.now(UTC)
    if sent:
        statement = (
            update(JOBS)
            .where(JOBS.c.id == bindparam("job_id"), JOBS.c.status == JobStatus.QUEUED)
            .values(status=JobStatus.RUNNING, started_at=bindparam("at"), lease_until=over)
        )
        rows = [{"job_id": job_id, "at": at} for job_id, at in sent.items()]
        await writing.execute(statement, rows)
    await writing.execute(
        update(JOBS)
        .where(JOBS.c.status == JobStatus.RUNNING, JOBS.c.lease_until.is_(None))
        .values(lease_until=over)
    )
    running = await writing.execute(
        select(func.count()).select_from(JOBS).where(JOBS.c.status == JobStatus.RUNNING)
    )
    return int(running.scalar_one())


async def _count_queued(writing: AsyncConnection) -> int:
    result = await writing.execute(
        select(func.count()).select_from(JOBS).where(JOBS.c.status == JobStatus.QUEUED)
    )
    return int(result.scalar_one())


async def _move_sequences(writing: AsyncConnection) -> None:
    """Move each id sequence past the copied ids, so a new row gets a fresh id."""
    for table in Base.metadata.sorted_tables:
        column = table.autoincrement_column
        if column is None:
            continue
        await writing.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'), "
                f"COALESCE(MAX({column.name}), 0) + 1, false) FROM {table.name}"
            )
        )


async def _verify(
    reading: AsyncConnection, writing: AsyncConnection, tables: list[tuple[str, int]]
) -> None:
    """Every table has as many rows on both sides as were copied (else nothing is committed)."""
    by_name = Base.metadata.tables
    for name, copied in tables:
        source = await _count(reading, by_name[name])
        target = await _count(writing, by_name[name])
        if source != copied:
            raise CopyRefused(
                f"{name} changed during the copy ({copied} rows copied, {source} now): is the "
                "bot still running on it? Stop it and copy again (nothing was committed)"
            )
        if target != copied:
            raise CopyRefused(f"{name}: {copied} rows copied but {target} arrived")
