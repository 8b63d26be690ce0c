"""The runner's world (engine and database on the fake image API) for the job tests."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.config import DatabaseSettings
from bot.testing.openai_api import FakeImagesAPI
from tests.jobs.test_runner import World, make_settings, open_world


@pytest.fixture
async def world(fake_images_api: FakeImagesAPI, tmp_path: Path) -> AsyncIterator[World]:
    async with open_world(fake_images_api, make_settings(fake_images_api, tmp_path)) as opened:
        yield opened
    assert fake_images_api.spec_violations == []


@pytest.fixture
async def world_on_each_engine(
    fake_images_api: FakeImagesAPI, tmp_path: Path, database_url: str
) -> AsyncIterator[World]:
    """The same world, once on SQLite and once on PostgreSQL: for the tests of what the
    store writes and reads (a module overrides ``world`` with it)."""
    settings = make_settings(fake_images_api, tmp_path)
    settings = dataclasses.replace(settings, database=DatabaseSettings(url=database_url))
    async with open_world(fake_images_api, settings) as opened:
        yield opened
    assert fake_images_api.spec_violations == []
