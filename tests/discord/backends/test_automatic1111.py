"""Every command, button and reaction on an AUTOMATIC1111 backend, as a member sees them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.db.models import Job
from bot.jobs import store
from bot.testing.automatic1111 import FakeAutomatic1111
from bot.testing.discord import FakeDiscord
from bot.testing.harness import (
    Harness,
    a1111_backend,
    job_id_of,
    make_settings,
    new_result,
    run_bot,
    seen_ids,
)
from bot.testing.openai_api import FakeImagesAPI


@pytest.fixture
async def a1111() -> AsyncIterator[FakeAutomatic1111]:
    async with FakeAutomatic1111(auth=("bot", "pw-SECRET"), step_delay=0.001) as server:
        yield server


@pytest.fixture
async def sd(
    tmp_path: Path,
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    a1111: FakeAutomatic1111,
) -> AsyncIterator[Harness]:
    """The bot with ``[provider] type = "automatic1111"``."""
    settings = make_settings(tmp_path, fake_discord, fake_images_api, **a1111_backend(a1111))
    async with run_bot(fake_discord, fake_images_api, settings, a1111=a1111) as running:
        yield running
    assert fake_discord.spec_violations == []
    assert fake_images_api.requests == []  # nothing went to the OpenAI fake


async def test_imagine_runs_txt2img_and_posts_the_images(
    sd: Harness, a1111: FakeAutomatic1111
) -> None:
    fake = sd.fake
    before = seen_ids(fake)
    handle = await fake.slash("imagine", {"prompt": "a lighthouse at dusk", "count": 2})
    assert (await handle.response()).ephemeral
    result = await new_result(sd, before)
    assert len(result.attachments) == 2
    assert result.embeds[0]["description"] == "a lighthouse at dusk"
    ((_, body),) = [(p, b) for p, b in a1111.requests if p.endswith("txt2img")]
    assert body["prompt"] == "a lighthouse at dusk" and body["batch_size"] == 2
    assert (body["width"], body["height"]) == (512, 512)
    stored = await _job(sd, job_id_of(result))
    assert stored.backend == "default" and stored.model == "automatic1111"
    assert stored.cost_micro_usd == 0  # self-hosted: free unless the operator prices it


async def _job(harness: Harness, job_id: int) -> Job:
    job = await store.get_job(harness.bot.storage.sessions, job_id)
    assert job is not None
    return job
