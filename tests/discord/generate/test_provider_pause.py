"""A provider's 429 with ``retry-after`` holds back the bot's other requests to it (one process,
SQLite): they would only draw 429s too. The request that drew it waits and retries itself."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable

from bot.config import Settings
from bot.testing.discord import FakeDiscord
from bot.testing.harness import run_bot
from bot.testing.openai_api import FakeImagesAPI

RETRY_AFTER = 2


async def test_a_429s_retry_after_holds_back_the_next_request_too(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    api = fake_images_api
    settings = settings_factory()
    settings = dataclasses.replace(
        settings, provider=dataclasses.replace(settings.provider, max_retries=1)
    )
    api.fail_next(429, code="rate_limit_exceeded", headers={"retry-after": str(RETRY_AFTER)})
    async with run_bot(fake_discord, api, settings) as harness:
        first = await harness.fake.slash("imagine", {"prompt": "a cat"})
        async with asyncio.timeout(5):
            while api.count_429 == 0:  # noqa: ASYNC110 - the fake API has no event to wait on
                await asyncio.sleep(0.01)
        told_at = time.monotonic()
        await asyncio.sleep(0.1)  # the client has heard it
        second = await harness.fake.slash("imagine", {"prompt": "a dog"})
        await second.response()
        await asyncio.sleep(RETRY_AFTER / 2)
        assert len(api.requests) == 1  # the dog waits although a slot is free
        async with asyncio.timeout(10):
            await harness.idle()
        assert time.monotonic() - told_at >= RETRY_AFTER - 0.2
        assert len(api.requests) == 3 and api.count_429 == 1
        sources = ("channel", "followup", "response")
        results = [m for m in harness.fake.messages(sources=sources) if m.attachments]
        assert len(results) == 2 and not any(m.ephemeral for m in results)
        assert first.deferred
    assert fake_discord.spec_violations == []
