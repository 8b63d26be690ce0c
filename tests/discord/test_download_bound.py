"""Many uploads at once: the bot reads at most 4 of them from the CDN together (MAX_DOWNLOADS).

A burst of requests with 25 MB uploads must not hold them all in memory at the same time;
every request still gets its images.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bot.config import JobsSettings, Settings
from tests.discord.conftest import png_bytes, run_bot
from tests.fakes.discord import FakeDiscord
from tests.fakes.openai_api import FakeImagesAPI

BURST = 10


async def test_a_burst_of_uploads_never_has_more_than_four_downloads_in_flight(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    fake, api = fake_discord, fake_images_api
    roomy = JobsSettings(max_queued_per_member=100, member_requests_per_minute=1000)
    fake.cdn_delay = 0.3  # each download takes a while: the burst's downloads overlap
    picture = png_bytes(256, 256, hole=(0, 0, 127, 255))
    async with run_bot(fake, api, settings_factory(jobs=roomy)) as harness:
        uploads = [fake.add_attachment(picture, f"room{i}.png") for i in range(BURST)]
        handles = await asyncio.gather(
            *(
                fake.slash("edit", {"prompt": f"room {i}", "image": upload})
                for i, upload in enumerate(uploads)
            )
        )
        for handle in handles:
            assert (await handle.response()).type == 5
        await fake.state.pulse.wait_until(
            lambda: True if len(fake.cdn_requests) >= BURST else None, 15, lambda: "downloads"
        )
        await harness.idle()
        for i in range(BURST):
            await harness.result(lambda m, i=i: m.embeds[0].get("description") == f"room {i}")
    assert fake.cdn_max_in_flight == 4  # overlapping, never more than the bound
    assert len(api.requests) == BURST
    assert fake.spec_violations == [] and api.spec_violations == []
