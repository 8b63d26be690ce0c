"""Many uploads at once: the bot reads at most 4 of them from the CDN together (MAX_DOWNLOADS).

A burst of requests with 25 MB uploads must not hold them all in memory at the same time;
the bound holds for every way in together (commands and reactions here), and every request
still gets its images.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bot.config import JobsSettings, Settings
from bot.testing.discord import FakeDiscord
from bot.testing.harness import new_result, run_bot
from bot.testing.images import png_bytes
from bot.testing.openai_api import FakeImagesAPI

EDITS = 8
REACTIONS = 4


async def test_a_burst_of_uploads_never_has_more_than_four_downloads_in_flight(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    fake, api = fake_discord, fake_images_api
    roomy = JobsSettings(max_queued_per_member=100, member_requests_per_minute=1000)
    picture = png_bytes(256, 256, hole=(0, 0, 127, 255))
    async with run_bot(fake, api, settings_factory(jobs=roomy)) as harness:
        await fake.slash("imagine", {"prompt": "a result to vary", "size": "256x256"})
        varied = await new_result(harness, set())
        members = [fake.add_member(fake.guild, f"member {i}") for i in range(REACTIONS)]
        uploads = [fake.add_attachment(picture, f"room{i}.png") for i in range(EDITS)]
        await fake.flush()
        fake.cdn_delay = 0.3  # each download takes a while: the burst's downloads overlap
        edits = [
            fake.slash("edit", {"prompt": f"room {i}", "image": upload})
            for i, upload in enumerate(uploads)
        ]
        reactions = [fake.react(varied, "🔄", user=member) for member in members]
        handles = (await asyncio.gather(*edits, *reactions))[:EDITS]
        for handle in handles:
            assert (await handle.response()).type == 5
        # Every request reached the image API (its downloads done, its job admitted): the
        # runner's idle says nothing of a reaction still reading its upload.
        await fake.state.pulse.wait_until(
            lambda: True if len(api.requests) >= 1 + EDITS + REACTIONS else None,
            15,
            lambda: f"image requests: {len(api.requests)} of {1 + EDITS + REACTIONS}",
        )
        await harness.idle()
        for i in range(EDITS):
            await harness.result(lambda m, i=i: m.embeds[0].get("description") == f"room {i}")
    assert fake.cdn_max_in_flight == 4  # overlapping, never more than the bound
    assert len(api.requests) == 1 + EDITS + REACTIONS
    assert fake.spec_violations == [] and api.spec_violations == []
