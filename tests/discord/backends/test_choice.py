"""Which backend a server's jobs run on: its admins' choice, within what the operator allows;
a result's Redo and Vary run where it was made while that backend is still there."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from bot.config import ProviderSettings, Settings
from bot.db.models import GuildSettings, Job
from bot.testing.automatic1111 import FakeAutomatic1111
from bot.testing.discord import FakeDiscord, StoredMessage
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
from tests.discord.backends.conftest import stored_job


def with_gpu(
    tmp_path: Path, fake: FakeDiscord, api: FakeImagesAPI, a1111: FakeAutomatic1111, **gpu: object
) -> Settings:
    backend = ProviderSettings(**a1111_backend(a1111, **gpu))
    return make_settings(tmp_path, fake, api, backends={"gpu": backend})


async def choose(harness: Harness, backend: str) -> None:
    """What the server's admins' choice leaves in the database."""
    async with harness.bot.storage.sessions() as session, session.begin():
        row = await session.get(GuildSettings, harness.fake.guild.id)
        if row is None:
            session.add(GuildSettings(guild_id=harness.fake.guild.id, backend=backend))
        else:
            row.backend = backend
    harness.bot.runner.backends.forget(harness.fake.guild.id)


async def imagine(harness: Harness) -> tuple[StoredMessage, Job]:
    before = seen_ids(harness.fake)
    await harness.fake.slash("imagine", {"prompt": "a windmill"})
    result = await new_result(harness, before)
    return result, await stored_job(harness, job_id_of(result))


async def redo(harness: Harness, result: StoredMessage) -> Job:
    before = seen_ids(harness.fake)
    fake = harness.fake
    await (await fake.click(result, f"ib:redo:{job_id_of(result)}", user=fake.user)).response()
    again = await new_result(harness, before)
    return await stored_job(harness, job_id_of(again))


async def test_the_servers_choice_runs_its_jobs_and_redo_stays_where_a_result_was_made(
    tmp_path: Path,
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    a1111: FakeAutomatic1111,
) -> None:
    settings = with_gpu(tmp_path, fake_discord, fake_images_api, a1111)
    async with run_bot(fake_discord, fake_images_api, settings, a1111=a1111) as harness:
        _, plain = await imagine(harness)
        assert (plain.backend, plain.model) == ("default", "dall-e-2")
        await choose(harness, "gpu")
        made_on_gpu, job = await imagine(harness)
        assert (job.backend, job.model) == ("gpu", "automatic1111")
        await choose(harness, "default")
        assert (await redo(harness, made_on_gpu)).backend == "gpu"  # still there: its own
    assert len(a1111.runs) == 2 and len(fake_images_api.requests) == 1

    # The operator removes the GPU server: its results are redone on the server's backend now.
    gone = dataclasses.replace(settings, backends={})
    async with run_bot(fake_discord, fake_images_api, gone) as harness:
        redone = await redo(harness, made_on_gpu)
        assert (redone.backend, redone.model) == ("default", "dall-e-2")
    assert len(a1111.runs) == 2


async def test_a_choice_the_operator_did_not_enable_for_the_server_runs_on_default(
    tmp_path: Path,
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    a1111: FakeAutomatic1111,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = with_gpu(tmp_path, fake_discord, fake_images_api, a1111, enabled_guilds=(1,))
    async with run_bot(fake_discord, fake_images_api, settings, a1111=a1111) as harness:
        await choose(harness, "gpu")
        with caplog.at_level(logging.WARNING, "bot.jobs.backends"):
            _, job = await imagine(harness)
    assert job.backend == "default" and a1111.runs == []
    assert "chose the backend 'gpu', which is not enabled for it" in caplog.text
