"""Databases already at the latest schema, for tests that start a whole bot (or its runner).

Every start of the bot migrates its database (bot.app.open_storage); on a new database that
is the whole Alembic history, about half a second of each such test on the 2-core machine,
and a few hundred tests start a bot. So each test process migrates one template database
once, exactly as a start does (:func:`bot.app.open_storage`), and every test's database is a
copy of it: a file copy on SQLite, ``CREATE DATABASE … TEMPLATE`` on PostgreSQL. The bot's
own start still runs its migration step, which finds the database at the head and does
nothing, as it does on every restart in production.

Tests of migrating itself (tests/db, ``db upgrade``, a database older versions left) make
their own databases and never come here.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import os
import shutil
import tempfile
import threading
from pathlib import Path

from bot.testing import postgres
from bot.testing.postgres import DATABASE_ENV, PostgresServer, shared_server

#: The SQLite template of this process (a migrated file), made on first use.
_sqlite_template: Path | None = None
#: The shared PostgreSQL server that holds the migrated template database.
_postgres_template_on: PostgresServer | None = None
_lock = threading.Lock()
_numbers = itertools.count(1)

TEMPLATE_DATABASE = "imagebot_migrated_template"


def migrated_database_url(folder: Path) -> str:
    """:func:`bot.testing.postgres.scratch_database_url`, at the latest schema already:
    ``folder/bot.db`` (copied from the template unless the file exists), or a PostgreSQL
    database of its own made from the migrated template when
    ``IMAGEBOT_TEST_DATABASE=postgresql``."""
    engine = os.environ.get(DATABASE_ENV, "sqlite")
    if engine == "sqlite":
        path = folder / "bot.db"
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(_sqlite_template_file(), path)
        return f"sqlite+aiosqlite:///{path}"
    if engine != "postgresql":
        raise ValueError(f"{DATABASE_ENV}={engine!r}: use sqlite or postgresql")
    # The folder's database is scratch_database_url's too (a test reads the bot's rows there).
    key = folder.resolve()
    if key not in postgres._databases:
        server = _postgres_template_server()
        name = f"test_{os.getpid()}_m{next(_numbers)}"
        server.psql(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DATABASE}"')
        postgres._databases[key] = server.url(name)
    return postgres._databases[key]


def _sqlite_template_file() -> Path:
    global _sqlite_template
    with _lock:
        if _sqlite_template is None:
            folder = Path(tempfile.mkdtemp(prefix="imagebot-template-"))
            atexit.register(shutil.rmtree, folder, True)
            path = folder / "bot.db"
            _migrate(f"sqlite+aiosqlite:///{path}")
            _sqlite_template = path
        return _sqlite_template


def _postgres_template_server() -> PostgresServer:
    """The shared server, holding the migrated template (migrated again on a new server: the
    session's was stopped and another started)."""
    global _postgres_template_on
    with _lock:
        server = shared_server()
        if _postgres_template_on is not server:
            server.psql(f'CREATE DATABASE "{TEMPLATE_DATABASE}" TEMPLATE template0')
            _migrate(server.url(TEMPLATE_DATABASE))
            _postgres_template_on = server
        return server


def _migrate(url: str) -> None:
    """Open and close the storage at ``url`` as a bot's start does, in a thread of its own:
    callers are often inside a running event loop (an async fixture making settings)."""
    from bot.app import open_storage
    from bot.config import DatabaseSettings, Settings

    async def migrate() -> None:
        async with open_storage(Settings(database=DatabaseSettings(url=url))):
            pass

    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(migrate())
        except BaseException as error:  # re-raised in the caller's thread
            failure.append(error)

    thread = threading.Thread(target=run, name="migrate-template")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
