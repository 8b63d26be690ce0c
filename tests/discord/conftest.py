"""Fixtures that start the whole bot against the fakes (the driver is ``bot.testing.harness``)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.config import QuotaSettings, Settings
from bot.testing.discord import FakeDiscord
from bot.testing.harness import ROOMY_QUOTAS, Harness, make_settings, run_bot
from bot.testing.openai_api import FakeImagesAPI


@pytest.fixture
def settings_factory(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI
) -> Callable[..., Settings]:
    def make(**changes: Any) -> Settings:
        model = changes.pop("model", "dall-e-2")
        settings = make_settings(tmp_path, fake_discord, fake_images_api, model=model)
        return dataclasses.replace(settings, **changes)

    return make


@pytest.fixture
def quotas() -> QuotaSettings:
    """The limits ``harness`` runs under: none a test reaches; a module on limits overrides it."""
    return ROOMY_QUOTAS


@pytest.fixture
async def harness(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
    quotas: QuotaSettings,
) -> AsyncIterator[Harness]:
    """The bot on dall-e-2 (every operation, native variations)."""
    async with run_bot(fake_discord, fake_images_api, settings_factory(quotas=quotas)) as running:
        yield running
    assert fake_discord.spec_violations == []
    assert fake_images_api.spec_violations == []
