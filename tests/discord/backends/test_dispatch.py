"""Each backend has its own queue and concurrency: a GPU server runs one job at a time while the
OpenAI API takes its own jobs alongside, and neither waits for the other."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import socket
from pathlib import Path

from bot.config import DatabaseSettings, JobsSettings, ProviderSettings
from bot.db.models import GuildSettings
from bot.testing.automatic1111 import FakeAutomatic1111
from bot.testing.discord import FakeChannel, FakeDiscord, FakeMember, StoredMessage
from bot.testing.harness import Harness, a1111_backend, make_settings, run_bot
from bot.testing.openai_api import FakeImagesAPI


async def test_gpu_jobs_never_overlap_while_openai_jobs_run_alongside(
    tmp_path: Path,
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    a1111: FakeAutomatic1111,
) -> None:
    fake = fake_discord
    a1111.step_delay = 0.01  # 20 steps of 10 ms: a fifth of a second a job
    gpu_guild = fake.add_guild("GPU Server")
    gpu_channel = fake.add_channel(gpu_guild, "art")
    gpu_members = [fake.add_member(gpu_guild, f"painter{i}") for i in range(3)]
    api_members = [fake.add_member(fake.guild, f"member{i}") for i in range(3)]
    settings = make_settings(
        tmp_path,
        fake,
        fake_images_api,
        backends={"gpu": ProviderSettings(**a1111_backend(a1111))},  # concurrency 0: one
    )
    settings = dataclasses.replace(settings, jobs=JobsSettings(concurrency=4))
    fake_images_api.delay = 0.3
    async with run_bot(fake, fake_images_api, settings, a1111=a1111) as harness:
        async with harness.bot.storage.sessions() as session, session.begin():
            session.add(GuildSettings(guild_id=gpu_guild.id, backend="gpu"))  # its admins' choice
        peaks = await _run_all(harness, gpu_members, gpu_channel, api_members)
        await harness.idle()
    assert len(a1111.runs) == 3 and len(fake_images_api.requests) == 3
    runs = sorted(a1111.runs, key=lambda run: run.arrived)
    for earlier, later in itertools.pairwise(runs):
        assert later.arrived >= earlier.answered  # the next was sent once the last answered
    gpu_peak, together = peaks
    assert gpu_peak == 1  # one at a time on the GPU server
    assert together  # ... while OpenAI jobs ran at the same moment
    assert fake_images_api.spec_violations == []


async def _run_all(
    harness: Harness,
    gpu_members: list[FakeMember],
    gpu_channel: FakeChannel,
    api_members: list[FakeMember],
) -> tuple[int, bool]:
    """Submit all six at once; sample who runs meanwhile: (peak gpu jobs, both at once)."""
    fake, runner = harness.fake, harness.bot.runner
    for member in gpu_members:
        await fake.slash("imagine", {"prompt": "an oil painting"}, user=member, channel=gpu_channel)
    for member in api_members:
        await fake.slash("imagine", {"prompt": "a photo", "size": "256x256"}, user=member)
    gpu_peak, together = 0, False
    async with asyncio.timeout(20):
        while len(_results(fake)) < 6:
            lanes = [job.lane for job in runner.running.values()]  # either queue, in or shared
            gpu, api = lanes.count("gpu"), lanes.count("default")
            gpu_peak = max(gpu_peak, gpu)
            together = together or (gpu >= 1 and api >= 1)
            await asyncio.sleep(0.005)
    return gpu_peak, together


def _results(fake: FakeDiscord) -> list[StoredMessage]:
    return [m for m in fake.state.messages.values() if m.attachments and not m.ephemeral]


async def test_a_job_failed_over_to_the_gpu_server_waits_for_its_one_slot(
    tmp_path: Path,
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    a1111: FakeAutomatic1111,
    database_url: str,
) -> None:
    """OpenAI down, fallback = ["gpu"] (one job at a time): the jobs it moves there queue
    behind the GPU server's own job instead of being sent to it alongside (the in-memory
    lanes on SQLite, the shared queue's process slots on PostgreSQL)."""
    fake = fake_discord
    a1111.step_delay = 0.01  # 20 steps of 10 ms: a fifth of a second a job
    gpu_guild = fake.add_guild("GPU Server")
    gpu_channel = fake.add_channel(gpu_guild, "art")
    painter = fake.add_member(gpu_guild, "painter")
    members = [fake.add_member(fake.guild, f"member{i}") for i in range(2)]
    with socket.socket() as probe:  # an address where nothing listens: OpenAI is down
        probe.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{probe.getsockname()[1]}"
    settings = make_settings(
        tmp_path,
        fake,
        fake_images_api,
        backends={"gpu": ProviderSettings(**a1111_backend(a1111))},  # concurrency 0: one
        base_url=down,
        fallback=("gpu",),
    )
    settings = dataclasses.replace(
        settings, jobs=JobsSettings(concurrency=4), database=DatabaseSettings(url=database_url)
    )
    async with run_bot(fake, fake_images_api, settings, a1111=a1111) as harness:
        async with harness.bot.storage.sessions() as session, session.begin():
            session.add(GuildSettings(guild_id=gpu_guild.id, backend="gpu"))
        painting = {"prompt": "an oil painting"}
        await fake.slash("imagine", painting, user=painter, channel=gpu_channel)
        for member in members:
            await fake.slash("imagine", {"prompt": "a photo"}, user=member)
        async with asyncio.timeout(20):
            while len(_results(fake)) < 3:  # noqa: ASYNC110 - the results have no event
                await asyncio.sleep(0.01)
        await harness.idle()
    assert len(a1111.runs) == 3
    runs = sorted(a1111.runs, key=lambda run: run.arrived)
    for earlier, later in itertools.pairwise(runs):
        assert later.arrived >= earlier.answered  # never two at once on the GPU server
