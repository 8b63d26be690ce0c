"""A migrated SQLite database for the ledger and report tests (no bot, no Discord)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.db import create_engine, create_sessionmaker, upgrade_database
from bot.db.engine import Storage


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
    await upgrade_database(engine)
    yield Storage(engine, create_sessionmaker(engine))
    await engine.dispose()
