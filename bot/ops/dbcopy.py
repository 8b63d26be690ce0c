"""``python -m bot db copy``: move a stopped bot's database to PostgreSQL (bot.db.copy copies).

This module adds what only the bot's files know: the started-jobs journal beside the SQLite file
(jobs sent to the provider, still queued in their rows) is carried over; results kept in the
spool (made while the database could not take them) exist only as files, so a copy with any is
refused until the bot's next start on SQLite has recorded them. It prints a summary per table and
never a password: every URL shown has it as ``***``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import Settings
from bot.db import create_engine, create_sessionmaker
from bot.db.copy import Carried, CopyRefused, copy_database, shown
from bot.db.engine import sqlite_path
from bot.errors import BotError
from bot.exit_codes import EXIT_OK
from bot.jobs import claims
from bot.jobs.journal import StartedJournal
from bot.jobs.spool import inflight_dir

#: The journal's file in the in-flight directory (as bot.jobs.runner.JobRunner names it).
JOURNAL_NAME = "started.log"


#: The copy stopped on a database error; nothing was committed (exit 1; an operator's
#: command: no member reads it).
CopyFailed = BotError


async def copy_bot_database(settings: Settings, source_url: str, target_url: str) -> int:
    _parse(target_url, "--to")
    _parse(source_url, "--from (or [database] url)")
    _check_source_exists(source_url)  # before its engine, which would make the file's folder
    target, source = _engine(target_url, "--to"), _engine(source_url, "--from")
    try:
        return await _copy(settings, source, target, [source_url, target_url])
    finally:
        await source.dispose()
        await target.dispose()


async def _copy(
    settings: Settings, source: AsyncEngine, target: AsyncEngine, urls: list[str]
) -> int:
    source_url, target_url = urls
    source_settings = dataclasses.replace(
        settings, database=dataclasses.replace(settings.database, url=source_url)
    )
    inflight = inflight_dir(source_settings)
    _refuse_spooled_results([Path(settings.storage.spool_dir), inflight])
    carried = Carried(sent=StartedJournal(inflight / JOURNAL_NAME).read())
    print(f"copying {shown(source_url)}\n   into {shown(target_url)}")
    # The summary is the output; Alembic's line per migration of the target would bury it.
    alembic = logging.getLogger("alembic")
    level = alembic.level
    alembic.setLevel(logging.WARNING)
    try:
        report = await copy_database(
            source, target, carried, progress=lambda name, rows: print(f"  {name:<16} {rows:>9}")
        )
        # Each queued job gets its place in the shared queue's fair order, as its admission
        # would give it (a copy that fails here can be run again: the target is not empty, so
        # `python -m bot run` keys them at its start, bot.jobs.claims.enqueue_unkeyed).
        await claims.enqueue_unkeyed(create_sessionmaker(target))
    except (SQLAlchemyError, OSError) as exc:
        passwords = [make_url(url).password or "" for url in urls]
        raise CopyFailed(
            f"the copy failed, nothing was committed: {_first_line(exc, passwords)}"
        ) from None
    finally:
        alembic.setLevel(level)
    total = sum(rows for _, rows in report.tables)
    print(
        f"copied {total} rows in {len(report.tables)} tables (revision {report.revision}); "
        "every table's count matches"
    )
    if report.queued:
        print(f"{report.queued} queued jobs wait in the shared queue, in their fair order")
    if report.interrupted:
        print(
            f"{report.interrupted} jobs were running at the stop: the first process that runs "
            "jobs reports them interrupted (possibly billed) and tells their requesters"
        )
    print(
        "next: set [database] url (or DATABASE_URL) to the new database, then start the bot; "
        "keep the SQLite file as a backup"
    )
    return EXIT_OK


def _parse(url: str, option: str) -> None:
    """One line when ``url`` is not a URL (not repeated: it may hold a password where the
    parser saw none)."""
    try:
        make_url(url)
    except ArgumentError:
        raise CopyRefused(
            f"{option} is not a database URL (e.g. postgresql+asyncpg://USER@HOST/DB)"
        ) from None


def _engine(url: str, option: str) -> AsyncEngine:
    try:
        return create_engine(url)
    except ModuleNotFoundError as exc:
        raise CopyRefused(
            f"{option} needs the database driver {exc.name!r}: pip install -e '.[postgres]'"
        ) from None


def _check_source_exists(url: str) -> None:
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        raise CopyRefused(f"there is no database at {path} (--from, or [database] url)")


def _refuse_spooled_results(directories: list[Path]) -> None:
    kept = [path for folder in directories if folder.is_dir() for path in folder.glob("job-*")]
    if kept:
        folders = sorted({str(path.parent) for path in kept})
        raise CopyRefused(
            f"results are kept on disk in {', '.join(folders)}, not in the database yet: start "
            "the bot once on this database (it records them at start), stop it, then copy"
        )


def _first_line(error: BaseException, secrets: list[str]) -> str:
    """The error's own first line (SQLAlchemy appends a link), without any password."""
    detail = str(getattr(error, "orig", None) or error).strip().splitlines()
    line = detail[0] if detail else type(error).__name__
    for secret in secrets:
        if secret:
            line = line.replace(secret, "***")
    return f"{type(getattr(error, 'orig', None) or error).__name__}: {line}"
