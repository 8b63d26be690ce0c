"""A request's uploads are normalized before it waits in the queue (bench/memory.py: the memory).

A member's 12 MP phone photo is 4-5 MB (up to 25 MB) and decodes to ~30 MB of work; the PNG
sent for it is about 1.3 MB. What a queued job holds, in memory and in the database, is that
PNG, so a burst of uploads waiting for their turn costs what will be sent, not what was sent in.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
from collections.abc import Callable

from PIL import Image
from sqlalchemy import select

from bot.config import JobsSettings, Settings
from bot.db.models import ImageRole, Job, JobImage, JobStatus
from bot.testing.discord import FakeDiscord
from bot.testing.harness import run_bot
from bot.testing.images import photo_jpeg
from bot.testing.openai_api import FakeImagesAPI


async def test_a_queued_job_holds_the_png_it_will_send_not_the_members_photo(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    fake, api = fake_discord, fake_images_api
    one_at_a_time = dataclasses.replace(JobsSettings(), concurrency=1)
    photo = photo_jpeg()
    async with run_bot(fake, api, settings_factory(jobs=one_at_a_time)) as harness:
        api.delay = 1.5  # the first job holds the provider: the vary waits in the queue
        await fake.slash("imagine", {"prompt": "a lighthouse", "size": "256x256"})
        upload = fake.add_attachment(photo, "phone.jpg")
        handle = await fake.slash("vary", {"image": upload}, user=fake.admin)
        assert (await handle.response()).type == 5

        async def queued_vary() -> Job | None:
            async with harness.bot.storage.sessions() as session:
                found = await session.scalars(select(Job).where(Job.operation == "vary"))
                job = found.first()
                return job if job is not None and job.status is JobStatus.QUEUED else None

        async with asyncio.timeout(10):
            while (job := await queued_vary()) is None:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        async with harness.bot.storage.sessions() as session:
            stored = list(await session.scalars(select(JobImage).where(JobImage.job_id == job.id)))
        assert [image.role for image in stored] == [ImageRole.INPUT]
        sent = stored[0].data
        assert sent.startswith(b"\x89PNG") and len(sent) < len(photo) / 2
        assert Image.open(io.BytesIO(sent)).size == (1024, 1024)
        api.delay = 0.0
        await harness.idle()
    assert len(api.requests) == 2
    assert fake.spec_violations == [] and api.spec_violations == []
