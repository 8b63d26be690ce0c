"""Fixtures for the fakes' own tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes.discord import FakeDiscord


@pytest.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    """A started fake Discord with the default guild, channel, members and bot user.

    Run a discord.py client against it with ``async with fake_discord.running(bot): ...``; the
    test should end with ``assert fake_discord.spec_violations == []``.
    """
    async with FakeDiscord() as fake:
        yield fake
