"""Fixtures shared by several test packages."""

from __future__ import annotations

import importlib.util
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.db import create_engine, create_sessionmaker, upgrade_database
from bot.db.engine import Storage, create_transactions
from bot.testing.discord import FakeDiscord
from bot.testing.openai_api import FakeImagesAPI
from bot.testing.postgres import (
    DATABASE_ENV,
    PostgresServer,
    PostgresUnavailable,
    required,
    shared_server,
    stop_shared_server,
)

# The bot processes the tests start (python -m bot ..., some hundred) would each compile the
# bot's modules from source where the environment forbids writing bytecode (this machine's
# and CI's set PYTHONDONTWRITEBYTECODE): a third of a second of CPU each. They share one
# bytecode cache instead, outside the checkout, so its tree stays as it was.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
os.environ.setdefault(
    "PYTHONPYCACHEPREFIX",
    str(Path(tempfile.gettempdir()) / f"imagebot-tests-pycache-{os.getuid()}"),
)


@pytest.fixture
async def fake_images_api() -> AsyncIterator[FakeImagesAPI]:
    """A fake OpenAI Images API on 127.0.0.1; point a client at ``.base_url`` with ``.api_key``."""
    async with FakeImagesAPI() as api:
        yield api


@pytest.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    """A started fake Discord with the default guild, channel, members and bot user.

    Run a discord.py client against it with ``async with fake_discord.running(bot): ...``; the
    test should end with ``assert fake_discord.spec_violations == []``.
    """
    async with FakeDiscord() as fake:
        yield fake


@pytest.fixture(scope="session")
def postgres_server() -> PostgresServer:
    """One throwaway PostgreSQL server per test process (xdist worker); skipped where there is
    no PostgreSQL (or no asyncpg), except where IMAGEBOT_POSTGRES_REQUIRED is set (CI), which
    fails instead. The same server holds the databases of IMAGEBOT_TEST_DATABASE=postgresql."""
    try:
        if importlib.util.find_spec("asyncpg") is None:
            raise PostgresUnavailable("asyncpg is not installed: pip install -e '.[test,postgres]'")
        return shared_server()
    except PostgresUnavailable as error:
        if required():
            raise
        pytest.skip(f"PostgreSQL tests skipped: {error}")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked ``both_engines`` (the whole bot, end to end) run once per engine: their
    bot's database (bot.testing.postgres.scratch_database_url) is SQLite, then PostgreSQL.
    The rest of the Discord-level suite runs on SQLite only (on both with
    IMAGEBOT_TEST_DATABASE=postgresql): twice the whole suite would not fit CI's time."""
    if metafunc.definition.get_closest_marker("both_engines") is None:
        return
    if "engine" in metafunc.fixturenames:
        metafunc.parametrize("engine", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The engine of a ``both_engines`` test's bot (set before its settings are made)."""
    name = str(getattr(request, "param", "sqlite"))
    if name == "postgresql":
        request.getfixturevalue("postgres_server")  # skipped (or failing in CI) without one
    monkeypatch.setenv(DATABASE_ENV, name)
    return name


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    stop_shared_server()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The SQLAlchemy URL of a new, empty PostgreSQL database of this test's own."""
    return postgres_server.create_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a new, empty database, once on each engine (test ids ``[sqlite]`` and
    ``[postgresql]``): a file in ``tmp_path``, and a PostgreSQL database of the test's own
    (skipped, with the reason, where PostgreSQL is not installed, except in CI)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def storage(database_url: str) -> AsyncIterator[Storage]:
    """A migrated database of the test's own on each engine (no bot, no Discord), with the hot
    path's transactions as the bot has them (on SQLite: in the event loop)."""
    engine = create_engine(database_url)
    await upgrade_database(engine)
    sessions = create_sessionmaker(engine)
    transactions = create_transactions(sessions, database_url)
    yield Storage(engine, sessions, transactions)
    await transactions.aclose()
    await engine.dispose()
