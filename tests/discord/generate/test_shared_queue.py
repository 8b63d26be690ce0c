"""The whole bot on PostgreSQL, where the queue is the database's (shared by every process):
as a member sees it, the same as on SQLite: the result, the place in line, Cancel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from sqlalchemy import select

from bot.config import DatabaseSettings, JobsSettings, Settings
from bot.db.models import Job, JobStatus
from bot.testing.discord import FakeDiscord
from bot.testing.harness import Harness, run_bot
from bot.testing.openai_api import FakeImagesAPI
from tests.discord.generate.test_queue import (
    CANCELLED,
    DONE,
    WORKING,
    imagine,
    members,
    queued_at,
    running,
    status,
    texts,
)


@pytest.fixture
async def line(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
    postgres_url: str,
) -> AsyncIterator[Harness]:
    """One job at a time on PostgreSQL, against a 1 s image API."""
    settings = settings_factory(
        database=DatabaseSettings(url=postgres_url),
        jobs=JobsSettings(concurrency=1, max_queued_per_member=2, max_queued_per_guild=4),
    )
    async with run_bot(fake_discord, fake_images_api, settings) as harness:
        assert harness.bot.runner.shared is not None
        harness.bot.delivery.status.refresh_seconds = 0.4
        harness.bot.delivery.status.pass_seconds = 0.05
        fake_images_api.delay = 1.0
        yield harness
        fake_images_api.delay = 0.0
    assert fake_discord.spec_violations == []
    assert fake_images_api.spec_violations == []


async def test_imagine_on_the_shared_queue_posts_the_result_once(line: Harness) -> None:
    line.api.delay = 0.0
    handle = await imagine(line, "a lighthouse on PostgreSQL")
    result = await line.result()
    assert result.embeds[0]["description"] == "a lighthouse on PostgreSQL"
    await status(handle, lambda text: text == DONE)
    await line.idle()
    await asyncio.sleep(0.3)
    posted = [m for m in line.fake.state.messages.values() if m.attachments]
    assert len(posted) == 1
    async with line.bot.storage.sessions() as session:
        (job,) = (await session.execute(select(Job))).scalars()
    assert job.status is JobStatus.DELIVERED and job.result_message_id == result.id
    assert job.delivery_owner == line.bot.runner.process.id


async def test_waiting_requests_see_their_place_move_and_can_cancel(line: Harness) -> None:
    fake = line.fake
    first, second, third = members(fake, 3)
    a = await imagine(line, "first", first)
    await running(line)
    await status(a, lambda text: text == WORKING)
    b = await imagine(line, "second", second)
    c = await imagine(line, "third", third)
    await status(b, queued_at(1))
    c_status = await status(c, queued_at(2))
    await status(b, lambda text: text == WORKING)  # the queue moves: b runs, c is next
    c_status = await status(c, queued_at(1))
    (cancel,) = c_status.custom_ids
    click = await fake.click(c_status, cancel, user=third)
    assert (await click.response()).type == 7
    assert c.original is not None and c.original.content == CANCELLED
    for handle in (a, b):
        await status(handle, lambda text: text == DONE)
    await line.idle()
    await asyncio.sleep(0.5)  # no late queue update undoes "Cancelled"
    assert texts(c.original)[-1] == CANCELLED and c.original.components == []
    assert [r.body["prompt"] for r in line.api.requests] == ["first", "second"]
