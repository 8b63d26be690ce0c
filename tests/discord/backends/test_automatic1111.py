"""Every command, button and reaction on an AUTOMATIC1111 backend, as a member sees them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bot.db.models import Job, JobStatus
from bot.discord.i18n import Catalog
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

CATALOG = Catalog.load()


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


async def test_cancel_while_running_interrupts_our_job_and_posts_nothing(
    sd: Harness, a1111: FakeAutomatic1111
) -> None:
    fake = sd.fake
    a1111.step_delay = 0.05  # 20 steps: a second of work, time to press Cancel
    handle = await fake.slash("imagine", {"prompt": "a slow sunrise"})
    working = CATALOG.text("status.working", n=1)
    status = await handle.wait_message(lambda m: m.content == working and bool(m.custom_ids))
    (cancel,) = status.custom_ids
    task = await a1111.wait_running(step=2)
    click = await fake.click(status, cancel, user=fake.user)
    assert (await click.response()).type == 7  # the status message itself says so
    assert handle.original is not None
    assert handle.original.content == CATALOG.text("status.cancelled")
    assert handle.original.components == []
    await sd.idle()
    await _eventually(lambda: a1111.interrupts == [task])  # ours, and only ours
    await _eventually(lambda: a1111.runs[0].interrupted)  # the server stopped it
    assert [run.task_id for run in a1111.runs] == [task]
    job = await _job(sd, int(cancel.split(":")[2]))
    assert job.status is JobStatus.CANCELLED
    assert (job.n_charged, job.cost_micro_usd, job.possibly_billed) == (0, 0, False)
    await asyncio.sleep(0.2)
    assert not [m for m in fake.state.messages.values() if m.attachments]  # nothing posted


async def _eventually(check: Callable[[], bool], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110 - the fake has no event for it
            await asyncio.sleep(0.01)
