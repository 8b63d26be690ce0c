"""A migrated database for the ledger and report tests (no bot, no Discord), once on SQLite
and once on PostgreSQL (the ``database_url`` fixture)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.db import create_engine, create_sessionmaker, upgrade_database
from bot.db.engine import Storage, create_transactions


@pytest.fixture
async def storage(database_url: str) -> AsyncIterator[Storage]:
    """The hot path's transactions as the bot has them: a thread of their own on SQLite."""
    engine = create_engine(database_url)
    await upgrade_database(engine)
    sessions = create_sessionmaker(engine)
    transactions = create_transactions(sessions, database_url)
    yield Storage(engine, sessions, transactions)
    await transactions.aclose()
    await engine.dispose()
