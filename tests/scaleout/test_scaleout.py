"""Scale-out end to end: gateway shards and workers as separate ``python -m bot`` processes on one
PostgreSQL database, against the fake Discord and the fake image API (issue 13, section 4).
"""

from __future__ import annotations

from pathlib import Path

from bot.testing.discord import FakeDiscord
from bot.testing.openai_api import FakeImagesAPI
from tests.scaleout.cluster import DONE, cluster, shown


async def test_one_process_on_postgresql_serves_an_imagine(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI, postgres_url: str
) -> None:
    """``python -m bot run`` stays the one-process default, on PostgreSQL too."""
    fake, api = fake_discord, fake_images_api
    async with cluster(tmp_path, fake, api, postgres_url) as bots:
        await bots.start("both", "run")
        await fake.wait_ready(timeout=30)
        await bots.synced()
        handle = await bots.imagine(fake.user, "one process")
        assert (await handle.response()).type == 5
        await handle.wait_message(lambda m: m.ephemeral and m.content == DONE, timeout=15)
        (result,) = bots.results("one process")
        assert result.pinged_ids == [fake.user.id]
        assert DONE in shown(handle)
        await bots.stop("both")
    assert bots.provider_prompts() == ["one process"]
    assert fake.spec_violations == [] and api.spec_violations == []
