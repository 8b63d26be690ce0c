"""Fixtures shared by several test packages."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes.openai_api import FakeImagesAPI


@pytest.fixture
async def fake_images_api() -> AsyncIterator[FakeImagesAPI]:
    """A fake OpenAI Images API on 127.0.0.1; point a client at ``.base_url`` with ``.api_key``."""
    async with FakeImagesAPI() as api:
        yield api
