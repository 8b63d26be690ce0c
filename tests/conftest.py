"""Fixtures shared by several test packages."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.testing.discord import FakeDiscord
from bot.testing.openai_api import FakeImagesAPI


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
