"""The bot under the limits an admin test module names in its own ``quotas`` fixture."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from bot.config import QuotaSettings, Settings
from tests.fakes.discord import FakeDiscord
from tests.fakes.harness import ROOMY_QUOTAS, Harness, run_bot
from tests.fakes.openai_api import FakeImagesAPI


@pytest.fixture
def quotas() -> QuotaSettings:
    """Limits no test reaches; a module that tests limits overrides this fixture."""
    return ROOMY_QUOTAS


@pytest.fixture
async def bot(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
    quotas: QuotaSettings,
) -> AsyncIterator[Harness]:
    async with run_bot(fake_discord, fake_images_api, settings_factory(quotas=quotas)) as running:
        yield running
    assert fake_discord.spec_violations == []
    assert fake_images_api.spec_violations == []
