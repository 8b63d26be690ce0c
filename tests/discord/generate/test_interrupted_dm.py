"""An interruption told by DM offers no Retry button: a click in a DM cannot act on a server's
job (no server, no roles to check), so the member is told to run the command again there."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bot.config import JobsSettings, Settings
from bot.discord.i18n import Catalog
from bot.testing.discord import FakeDiscord, P
from bot.testing.harness import run_bot
from bot.testing.openai_api import FakeImagesAPI
from tests.jobs.test_runner import in_memory_queue

CATALOG = Catalog.load()
INTERRUPTED = CATALOG.text("status.interrupted")
INTERRUPTED_DM = CATALOG.text("status.interrupted_dm")


@in_memory_queue  # the shared queue tells at the stop itself, while the channel still takes it
async def test_an_interruption_told_by_dm_says_to_ask_again_without_a_dead_button(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    fake, api = fake_discord, fake_images_api
    settings = settings_factory(jobs=JobsSettings(concurrency=1))
    api.delay = 30.0
    async with run_bot(fake, api, settings):
        cut = await fake.slash("imagine", {"prompt": "cut short", "size": "256x256"})
        async with asyncio.timeout(10):
            while not api.requests:  # noqa: ASYNC110 - the fake has no event for this
                await asyncio.sleep(0.01)
        fake.expire_interaction(cut)  # the private status can no longer be edited
    api.delay = 0.0
    # Nor may the bot post in the channel: the only way left is the member's DMs.
    fake.set_bot_permissions(fake.channel, P.VIEW_CHANNEL | P.READ_MESSAGE_HISTORY)
    async with run_bot(fake, api, settings):
        notice = await fake.wait_for_message(lambda m: INTERRUPTED_DM in m.content)
        assert notice.channel_id != fake.channel.id
        assert f"<#{fake.channel.id}>" in notice.content  # says where to ask again
        assert notice.custom_ids == []
    assert not any(INTERRUPTED in m.content for m in fake.state.messages.values())
