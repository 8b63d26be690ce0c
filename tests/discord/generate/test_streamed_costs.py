"""A GPT image request streamed with previews: each partial image is reserved before it runs
and charged in the ledger after (100 image output tokens each), through the whole bot."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from sqlalchemy import select

from bot.config import Settings
from bot.db.models import Job
from bot.quotas import format_usd
from bot.testing.discord import FakeDiscord
from bot.testing.harness import Harness, run_bot
from bot.testing.openai_api import FakeImagesAPI


async def jobs(harness: Harness) -> list[Job]:
    async with harness.bot.storage.sessions() as session:
        return list(await session.scalars(select(Job).order_by(Job.id)))


@pytest.mark.parametrize(
    ("model", "reserved", "settles"),
    [
        # $0.011 a low square image, and 2 x 100 image output tokens at $40 per 1M
        ("gpt-image-1", 11_000 + 2 * 4_000, lambda job: 11_000 + 2 * 4_000),
        # reserved at gpt-image-1's price, its partials at $30 per 1M; settled from the tokens
        (
            "gpt-image-2",
            11_000 + 2 * 3_000,
            lambda job: job.input_tokens * 5 + job.output_tokens * 30,
        ),
    ],
)
async def test_imagine_with_two_partial_images_reserves_and_settles_them(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
    model: str,
    reserved: int,
    settles: Callable[[Job], int],
) -> None:
    settings = settings_factory(model=model)
    provider = dataclasses.replace(settings.provider, partial_images=2)
    fake_images_api.stream_interval = 0.2  # the job is still running when its row is read
    async with run_bot(
        fake_discord, fake_images_api, dataclasses.replace(settings, provider=provider)
    ) as bot:
        options = {"prompt": "a kite", "size": "1024x1024", "quality": "low"}
        handle = await fake_discord.slash("imagine", options)
        await handle.wait_message(lambda message: "Making" in message.content)
        (running,) = await jobs(bot)
        assert running.cost_micro_usd == reserved  # the reservation, held while it runs
        result = await bot.result()
        await bot.idle()
        (job,) = await jobs(bot)
    sent = fake_images_api.requests[0].body
    assert (sent["stream"], sent["partial_images"]) == (True, 2)
    assert job.output_tokens == 272 + 2 * 100  # the final low image's tokens and the partials'
    assert job.cost_micro_usd == settles(job) <= reserved
    cost = {"inline": True, "name": "Cost", "value": format_usd(job.cost_micro_usd)}
    assert cost in result.embeds[0]["fields"]
    assert fake_images_api.spec_violations == []
