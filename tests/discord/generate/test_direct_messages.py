"""Direct messages: off unless the operator enables them, then with their own daily limit."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from bot.config import Settings
from bot.testing.discord import FakeDiscord
from bot.testing.harness import ROOMY_QUOTAS, run_bot
from bot.testing.openai_api import FakeImagesAPI

SOURCES = ("channel", "followup", "response")


async def test_commands_are_not_offered_in_dms_by_default(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    async with run_bot(fake_discord, fake_images_api, settings_factory()):
        dm = fake_discord.dm_channel(fake_discord.user)
        with pytest.raises(PermissionError, match="not available in DMs"):
            await fake_discord.slash("imagine", {"prompt": "a cat"}, channel=dm)
    assert fake_images_api.requests == []


async def test_enabled_dms_have_their_own_daily_limit(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    quotas = dataclasses.replace(ROOMY_QUOTAS, dm_enabled=True, dm_images_per_day=2)
    async with run_bot(fake_discord, fake_images_api, settings_factory(quotas=quotas)) as bot:
        fake = fake_discord
        dm = fake.dm_channel(fake.user)
        handle = await fake.slash("imagine", {"prompt": "a cat", "count": 2}, channel=dm)
        assert (await handle.response()).ephemeral
        result = await fake.wait_for_message(
            lambda m: bool(m.attachments) and m.channel_id == dm.id, timeout=10, sources=SOURCES
        )
        assert len(result.attachments) == 2
        await bot.idle()
        handle = await fake.slash("imagine", {"prompt": "one more"}, channel=dm)
        assert (await handle.response()).ephemeral
        refusal = await handle.wait_message(lambda m: "You have used" in m.content)
        assert refusal.ephemeral
        assert refusal.content.startswith("You have used your 2 images for today")
    assert len(fake_images_api.requests) == 1
