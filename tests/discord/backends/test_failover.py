"""[provider] fallback: a job whose backend is down is made by the next one; nothing else moves."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import DatabaseSettings, ProviderSettings, Settings, StorageSettings
from bot.db.models import JobStatus
from bot.testing.automatic1111 import FakeAutomatic1111
from bot.testing.discord import FakeDiscord
from bot.testing.harness import (
    Harness,
    a1111_backend,
    en,
    job_id_of,
    make_settings,
    new_result,
    run_bot,
    seen_ids,
)
from bot.testing.images import png_bytes
from bot.testing.openai_api import FakeImagesAPI
from tests.discord.backends.conftest import stored_job


def closed_port_url(path: str = "") -> str:
    """An address where nothing listens: connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


@pytest.fixture
def openai_then_gpu(
    tmp_path: Path,
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    a1111: FakeAutomatic1111,
) -> Settings:
    """[provider] on the OpenAI fake (dall-e-2), fallback = ["gpu"] on the A1111 fake."""
    gpu = ProviderSettings(**a1111_backend(a1111, price_per_image_usd=0.002))
    return make_settings(
        tmp_path, fake_discord, fake_images_api, backends={"gpu": gpu}, fallback=("gpu",)
    )


@pytest.fixture
async def harness(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    a1111: FakeAutomatic1111,
    openai_then_gpu: Settings,
) -> AsyncIterator[Harness]:
    async with run_bot(fake_discord, fake_images_api, openai_then_gpu, a1111=a1111) as running:
        yield running
    assert fake_discord.spec_violations == [] and fake_images_api.spec_violations == []


async def imagine(harness: Harness, **options: Any) -> Any:
    before = seen_ids(harness.fake)
    await harness.fake.slash("imagine", {"prompt": "a harbour at night", **options})
    result = await new_result(harness, before)
    return result, await stored_job(harness, job_id_of(result))


async def test_an_outage_503_is_made_by_the_fallback_and_priced_there(
    harness: Harness, a1111: FakeAutomatic1111, caplog: pytest.LogCaptureFixture
) -> None:
    harness.api.fail_next(503)
    with caplog.at_level(logging.WARNING, "bot.jobs.failover"):
        result, job = await imagine(harness, count=2)
    assert len(result.attachments) == 2
    assert [path for path, _ in a1111.requests if "2img" in path] == ["/sdapi/v1/txt2img"]
    assert (job.status, job.backend, job.model) == (JobStatus.DELIVERED, "gpu", "automatic1111")
    assert job.cost_micro_usd == 2 * 2000  # the gpu backend's own price per image
    assert not job.possibly_billed  # a 503 made nothing
    assert "backend default is down" in caplog.text and "made by backend gpu" in caplog.text
    # The next job goes to its own backend first again.
    _, second = await imagine(harness)
    assert second.backend == "default" and second.model == "dall-e-2"


async def test_a_refused_connection_is_made_by_the_fallback(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    a1111: FakeAutomatic1111,
    openai_then_gpu: Settings,
) -> None:
    down = ProviderSettings(**{**vars(openai_then_gpu.provider), "base_url": closed_port_url()})
    settings = Settings(**{**vars(openai_then_gpu), "provider": down})
    async with run_bot(fake_discord, fake_images_api, settings, a1111=a1111) as harness:
        _, job = await imagine(harness)
    assert job.backend == "gpu" and fake_images_api.requests == []


async def test_a_safety_rejection_is_not_failed_over(
    harness: Harness, a1111: FakeAutomatic1111
) -> None:
    harness.api.safety_next()
    handle = await harness.fake.slash("imagine", {"prompt": "something forbidden"})
    text = en(harness, "provider.safety_rejected")
    message = await handle.wait_message(lambda m: m.content == text)
    assert message.ephemeral and not message.attachments
    await harness.idle()
    assert a1111.requests == []  # another backend would make what the first refused


async def test_an_invalid_request_is_not_failed_over(
    harness: Harness, a1111: FakeAutomatic1111
) -> None:
    harness.api.fail_next(400, message="Invalid value for 'size'.", param="size")
    handle = await harness.fake.slash("imagine", {"prompt": "a harbour"})
    await handle.wait_message(lambda m: bool(m.content))
    await harness.idle()
    assert a1111.requests == []


async def test_a_fallback_that_cannot_take_the_request_is_passed_over(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    a1111: FakeAutomatic1111,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An A1111 default down, an OpenAI fallback on dall-e-3 (no edits): an /edit fails as down,
    while an /imagine is made there with dall-e-3's own model, within what was reserved for it
    (the free GPU server's job reserved what the API may cost)."""
    fallback = ProviderSettings(
        base_url=fake_images_api.base_url,
        api_key=fake_images_api.api_key,
        model="dall-e-3",
        max_retries=0,
        images_per_minute=100_000,
    )
    settings = make_settings(
        tmp_path,
        fake_discord,
        fake_images_api,
        backends={"cloud": fallback},
        **a1111_backend(a1111, base_url=closed_port_url(), fallback=("cloud",)),
    )
    async with run_bot(fake_discord, fake_images_api, settings) as harness:
        with caplog.at_level(logging.WARNING, "bot.jobs.runner"):
            _, job = await imagine(harness)
        assert (job.backend, job.model) == ("cloud", "dall-e-3")
        assert job.cost_micro_usd == 80_000  # dall-e-3 1024x1024, no quality asked: hd's price
        assert "more than the" not in caplog.text
        assert [r.body["model"] for r in fake_images_api.requests] == ["dall-e-3"]
        image = harness.fake.add_attachment(png_bytes(hole=(8, 8, 40, 40)), "photo.png")
        handle = await harness.fake.slash("edit", {"image": image, "prompt": "add a boat"})
        down = en(harness, "provider.unavailable")
        await handle.wait_message(lambda m: m.content == down)
        await harness.idle()
    assert len(fake_images_api.requests) == 1  # the edit never went to dall-e-3


async def test_a_timeout_fails_over_and_the_job_keeps_that_it_may_have_been_billed(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    a1111: FakeAutomatic1111,
    tmp_path: Path,
) -> None:
    """The GPU server answers too late: the next backend makes the images, and the job says
    the first may have made (and billed) them too; our job there is interrupted."""
    a1111.step_delay = 0.1  # 20 steps: two seconds, past the 0.5 s allowed
    cloud = ProviderSettings(
        base_url=fake_images_api.base_url,
        api_key=fake_images_api.api_key,
        model="dall-e-2",
        max_retries=0,
        images_per_minute=100_000,
    )
    settings = make_settings(
        tmp_path,
        fake_discord,
        fake_images_api,
        backends={"cloud": cloud},
        **a1111_backend(a1111, timeout_seconds=0.5, fallback=("cloud",)),
    )
    async with run_bot(fake_discord, fake_images_api, settings, a1111=a1111) as harness:
        _, job = await imagine(harness)
        assert (job.backend, job.status, job.possibly_billed) == (
            "cloud",
            JobStatus.DELIVERED,
            True,
        )
        async with asyncio.timeout(5):
            while not a1111.interrupts:  # noqa: ASYNC110 - the fake has no event for it
                await asyncio.sleep(0.01)
    assert [run.task_id for run in a1111.runs] == a1111.interrupts


async def test_a_failed_over_result_recorded_from_the_spool_names_the_backend_that_made_it(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    a1111: FakeAutomatic1111,
    openai_then_gpu: Settings,
    tmp_path: Path,
) -> None:
    """OpenAI answers 503, the GPU server makes the images, and the database is locked when
    they arrive: they are posted from the spool and, once it is back, recorded as the GPU
    server's at its price, not as the OpenAI model the job was admitted for."""
    path = tmp_path / "bot.db"
    spool = tmp_path / "spool"
    settings = dataclasses.replace(
        openai_then_gpu,
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{path}", busy_timeout_seconds=0.1),
        storage=StorageSettings(spool_dir=str(spool)),
    )
    a1111.step_delay = 0.02  # 20 steps: the lock is taken while it makes the images
    async with run_bot(fake_discord, fake_images_api, settings, a1111=a1111) as harness:
        results = harness.bot.runner.results
        results.retry_delays = (0.05,)
        harness.api.fail_next(503)
        before = seen_ids(harness.fake)
        await harness.fake.slash("imagine", {"prompt": "a harbour at night"})
        locker = sqlite3.connect(path, isolation_level=None)
        try:
            async with asyncio.timeout(5):
                while not a1111.requests:  # noqa: ASYNC110 - the fake has no event for it
                    await asyncio.sleep(0.01)
            locker.execute("BEGIN EXCLUSIVE")
            result = await harness.result(lambda m: m.id not in before)
            async with asyncio.timeout(5):
                while not (spool / "job-1.json").exists():  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
        finally:
            locker.rollback()
            locker.close()
        assert await results.flush() == 0  # what its timer does every 30 s
        assert list(spool.iterdir()) == []
        job = await stored_job(harness, job_id_of(result))
    assert (job.status, job.backend, job.model) == (JobStatus.DELIVERED, "gpu", "automatic1111")
    assert job.cost_micro_usd == 2000 and job.n_delivered == 1
