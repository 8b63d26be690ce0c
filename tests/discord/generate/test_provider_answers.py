"""A provider that answers more than it was asked cannot overdraw a member's quota or the books."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import pytest
from sqlalchemy import select

from bot.config import Settings
from bot.db.models import Job
from bot.testing.discord import FakeDiscord
from bot.testing.harness import ROOMY_QUOTAS, Harness, run_bot
from bot.testing.openai_api import FakeImagesAPI


async def jobs(harness: Harness) -> list[Job]:
    async with harness.bot.storage.sessions() as session:
        return list(await session.scalars(select(Job).order_by(Job.id)))


async def test_ten_images_for_one_asked_post_and_charge_one(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    quotas = dataclasses.replace(ROOMY_QUOTAS, member_images_per_day=2)
    async with run_bot(fake_discord, fake_images_api, settings_factory(quotas=quotas)) as bot:
        fake_images_api.misbehave_next(images=10, size="99999x99999", quality="ultra")
        await fake_discord.slash("imagine", {"prompt": "a cat", "size": "512x512"})
        result = await bot.result()
        assert len(result.attachments) == 1
        await bot.idle()
        (job,) = await jobs(bot)
        assert (job.n_delivered, job.n_charged) == (1, 1)
        assert (job.size, job.quality) == ("512x512", None)  # what was asked, not the answer
        assert job.cost_micro_usd == 18_000  # one 512x512 dall-e-2 image
        # One image of the two left: the member can still ask for one more.
        await fake_discord.slash("imagine", {"prompt": "another cat"})
        second = await bot.result(lambda m: m.id != result.id)
        assert len(second.attachments) == 1
    assert len(fake_images_api.requests) == 2


async def test_a_cost_above_the_reservation_is_logged(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = settings_factory(model="gpt-image-2")
    async with run_bot(fake_discord, fake_images_api, settings) as bot:
        usage = {"input_tokens": 10, "output_tokens": 400_000, "total_tokens": 400_010}
        fake_images_api.misbehave_next(usage=usage)
        with caplog.at_level(logging.WARNING, "bot.jobs"):
            await fake_discord.slash("imagine", {"prompt": "a cat"})
            await bot.result()
            await bot.idle()
        (job,) = await jobs(bot)
    assert f"job {job.id} cost {job.cost_micro_usd} micro-USD, more than the" in caplog.text
