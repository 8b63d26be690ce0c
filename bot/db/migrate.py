"""Apply Alembic migrations from inside the running program.

Alembic's commands are synchronous; with an async engine the documented way is to open a
connection, hand it to Alembic through ``config.attributes`` and run the command with
``run_sync``. migrations/env.py picks that connection up instead of opening its own.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

#: Where a non-editable install (``pip install .``) puts the migrations, under its data prefix
#: (pyproject.toml's ``[tool.setuptools.data-files]``).
INSTALLED_MIGRATIONS = Path("share", "imagebot", "migrations")
#: The PostgreSQL advisory lock key that migrations take (any fixed number: "imagebot").
MIGRATION_LOCK = 0x696D616765626F74


def migrations_dir() -> Path:
    """The ``migrations/`` folder next to the ``bot`` package (a checkout, the Docker image),
    else the copy a non-editable install has: there is no checkout next to its package."""
    beside = Path(__file__).resolve().parents[2] / "migrations"
    installed = Path(sysconfig.get_path("data")) / INSTALLED_MIGRATIONS
    return installed if not beside.is_dir() and installed.is_dir() else beside


MIGRATIONS_DIR = migrations_dir()


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


async def upgrade_database(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema up to ``revision``; a no-op when it is already there.

    On PostgreSQL the processes of a scaled-out bot start together and each migrates: a lock
    for the migration's transaction lets one do it while the others wait, then find nothing
    to do (two at once would both create the same tables, and one fail).

    On SQLite, foreign keys are off while it runs: Alembic's batch mode changes a table by
    copying it and dropping the old one, and with foreign keys on that drop fires their
    ``ON DELETE`` actions, which would delete every stored image (``job_images`` cascades)
    and forget which result a variation came from. SQLite ignores the pragma inside a
    transaction, so it is set before the migration's transaction begins.
    """

    def _upgrade(connection: Connection) -> None:
        command.upgrade(alembic_config(connection), revision)

    sqlite = engine.dialect.name == "sqlite"
    async with engine.connect() as connection:
        if sqlite:
            await connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            await connection.commit()
        try:
            async with connection.begin():
                if connection.dialect.name == "postgresql":
                    await connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK}
                    )
                await connection.run_sync(_upgrade)
        finally:
            if sqlite:
                await connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                await connection.commit()


async def pending_revisions(engine: AsyncEngine) -> list[str]:
    """Revisions not yet applied (empty when the database is up to date)."""

    def _pending(connection: Connection) -> list[str]:
        script = ScriptDirectory.from_config(alembic_config())
        current = set(MigrationContext.configure(connection).get_current_heads())
        pending: list[str] = []
        for rev in script.walk_revisions():
            if rev.revision in current:
                break
            pending.append(rev.revision)
        return pending[::-1]

    async with engine.connect() as connection:
        return await connection.run_sync(_pending)
