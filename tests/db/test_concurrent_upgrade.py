"""Processes of a scaled-out bot start together and each migrates the shared PostgreSQL."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from bot.db import create_engine, upgrade_database
from bot.db.migrate import pending_revisions


async def test_processes_migrating_an_empty_database_together_all_start(
    postgres_url: str,
) -> None:
    engines = [create_engine(postgres_url) for _ in range(3)]
    try:
        await asyncio.gather(*(upgrade_database(engine) for engine in engines))
        assert await pending_revisions(engines[0]) == []
        async with engines[0].connect() as connection:
            versions = (await connection.execute(text("SELECT * FROM alembic_version"))).all()
        assert len(versions) == 1
    finally:
        for engine in engines:
            await engine.dispose()
