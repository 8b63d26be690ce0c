"""The whole bot, wired as `python -m bot run` wires it, against fake Discord and image API."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.app import open_bot
from bot.config import (
    DatabaseSettings,
    DiscordSettings,
    ProviderSettings,
    Settings,
)
from bot.discord.bot import ImageBot
from tests.fakes.discord import FakeDiscord, StoredMessage
from tests.fakes.openai_api import FakeImagesAPI


@dataclass
class Harness:
    fake: FakeDiscord
    api: FakeImagesAPI
    bot: ImageBot
    settings: Settings

    async def result(
        self,
        predicate: Callable[[StoredMessage], bool] | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> StoredMessage:
        """The next public message with images (a posted result)."""

        def is_result(message: StoredMessage) -> bool:
            return (
                bool(message.attachments)
                and not message.ephemeral
                and (predicate is None or predicate(message))
            )

        return await self.fake.wait_for_message(
            is_result, timeout=timeout, sources=("channel", "followup", "response")
        )

    async def idle(self) -> None:
        await self.bot.runner.wait_idle()


def make_settings(
    tmp_path: Path, fake: FakeDiscord, api: FakeImagesAPI, model: str = "dall-e-2", **provider: Any
) -> Settings:
    return Settings(
        discord=DiscordSettings(
            token=fake.token, api_base_url=fake.api_base, gateway_url=fake.gateway_url
        ),
        provider=ProviderSettings(
            base_url=api.base_url,
            api_key=api.api_key,
            model=model,
            max_retries=0,
            user_salt="test",
            **provider,
        ),
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"),
    )


@asynccontextmanager
async def run_bot(
    fake: FakeDiscord, api: FakeImagesAPI, settings: Settings
) -> AsyncIterator[Harness]:
    async with open_bot(settings, guild_ready_timeout=0.05) as bot, fake.running(bot):
        yield Harness(fake, api, bot, settings)


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
async def harness(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> AsyncIterator[Harness]:
    """The bot on dall-e-2 (every operation, native variations)."""
    async with run_bot(fake_discord, fake_images_api, settings_factory()) as running:
        yield running
    assert fake_discord.spec_violations == []
    assert fake_images_api.spec_violations == []
