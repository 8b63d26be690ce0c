"""A migrated database for the moderation store tests (no bot, no Discord), once on SQLite
and once on PostgreSQL (the ``database_url`` fixture)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.db import create_engine, create_sessionmaker, upgrade_database
from bot.db.engine import Storage


@pytest.fixture
async def storage(database_url: str) -> AsyncIterator[Storage]:
    engine = create_engine(database_url)
    await upgrade_database(engine)
    yield Storage(engine, create_sessionmaker(engine))
    await engine.dispose()
