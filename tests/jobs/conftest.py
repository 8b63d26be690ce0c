"""The runner's world (engine and database on the fake image API) for the job tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.testing.openai_api import FakeImagesAPI
from tests.jobs.test_runner import World, make_settings, open_world


@pytest.fixture
async def world(fake_images_api: FakeImagesAPI, tmp_path: Path) -> AsyncIterator[World]:
    async with open_world(fake_images_api, make_settings(fake_images_api, tmp_path)) as opened:
        yield opened
    assert fake_images_api.spec_violations == []
