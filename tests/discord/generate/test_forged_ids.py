"""Retry and Cancel name a job in their custom_id: a click in one server never acts in another.

The custom_id is the client's to send (a modified client can put any job id in it). The
person most tempted is one who is in two servers: Bob's interrupted request in server A must
not be run again, its private prompt posted, in server B, and a click in B must not cancel what
he asked for in A. (Forged Remix forms: tests/discord/test_buttons.py. Reactions name no job:
the bot finds it by the message reacted to, which Discord gives with the server it is in.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bot.config import JobsSettings, Settings
from bot.discord.i18n import Catalog
from bot.testing.discord import FakeDiscord, FakeMember, StoredMessage
from bot.testing.harness import Harness, job_id_of, new_result, run_bot, seen_ids
from bot.testing.openai_api import FakeImagesAPI

CATALOG = Catalog.load()
INTERRUPTED = CATALOG.text("status.interrupted")
DONE = CATALOG.text("status.done")


def in_two_servers(fake: FakeDiscord) -> FakeMember:
    """Bob (``fake.user``) as a member of a second server too."""
    guild = fake.add_guild("Other Server")
    fake.add_channel(guild, "general")
    return fake.add_member(guild, "bob", user=fake.user.user)


async def result_in(harness: Harness, member: FakeMember) -> StoredMessage:
    """``member`` makes a result in their server's first channel: a message with buttons."""
    fake = harness.fake
    before = seen_ids(fake)
    channel = next(iter(member.guild.channels))
    await fake.slash(
        "imagine", {"prompt": "a boat", "count": 1, "size": "256x256"}, user=member, channel=channel
    )
    return await new_result(harness, before)


async def forged(harness: Harness, own: StoredMessage, member: FakeMember, custom_id: str) -> None:
    """``member`` clicks Redo on their own result, sending ``custom_id`` instead: nothing is done.

    Discord sends the clicked message with the click, and a custom_id that is on none of its
    components is dropped unanswered (discord.py matches it against them): the modified client
    sees Discord's "This interaction failed". The job it names is not touched."""
    click = await harness.fake.click(
        own, f"ib:redo:{job_id_of(own)}", user=member, forged_custom_id=custom_id
    )
    await asyncio.sleep(0.5)
    await harness.idle()
    assert click.response_type is None and click.messages == []


async def test_a_retry_naming_a_job_of_another_server_is_refused(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    fake, api = fake_discord, fake_images_api
    settings = settings_factory(jobs=JobsSettings(concurrency=1))
    bob, bob_in_b = fake.user, in_two_servers(fake)
    api.delay = 30.0
    async with run_bot(fake, api, settings):  # stops while Bob's request in A is being made
        cut = await fake.slash("imagine", {"prompt": "our private plan", "size": "256x256"})
        async with asyncio.timeout(10):
            while not api.requests:  # noqa: ASYNC110 - the fake API has no event to wait on
                await asyncio.sleep(0.01)
    api.delay = 0.0
    async with run_bot(fake, api, settings) as harness:
        notice = await cut.wait_message(lambda m: m.content == INTERRUPTED)
        (retry_id,) = notice.custom_ids
        own = await result_in(harness, bob_in_b)
        calls = len(api.requests)

        await forged(harness, own, bob_in_b, retry_id)
        await harness.idle()
        assert len(api.requests) == calls
        assert not [m for m in fake.state.messages.values() if "our private plan" in str(m.embeds)]

        # in server A, on its own notice, the Retry is still Bob's to use
        click = await fake.click(notice, retry_id, user=bob)
        await click.wait_message(lambda m: m.content == DONE)
        retried = await harness.result(lambda m: "our private plan" in str(m.embeds))
        assert fake.state.channels[retried.channel_id].guild is bob.guild
    assert fake.spec_violations == [] and api.spec_violations == []


async def test_a_cancel_naming_a_job_of_another_server_is_refused(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    fake, api = fake_discord, fake_images_api
    settings = settings_factory(jobs=JobsSettings(concurrency=1))
    bob_in_b = in_two_servers(fake)
    async with run_bot(fake, api, settings) as harness:
        own = await result_in(harness, bob_in_b)
        api.delay = 1.0
        await fake.slash("imagine", {"prompt": "first in A", "size": "256x256"})
        # the first runs before the second is sent: the second waits, with a Cancel button
        for _ in range(100):
            if len(api.requests) == 2:
                break
            await asyncio.sleep(0.05)
        waiting = await fake.slash("imagine", {"prompt": "second in A", "size": "256x256"})
        status = await waiting.wait_message(
            lambda m: any(c.startswith("ib:cancel:") for c in m.custom_ids)
        )
        (cancel_id,) = status.custom_ids

        await forged(harness, own, bob_in_b, cancel_id)
        await waiting.wait_message(lambda m: m.content == DONE, timeout=10)
        await harness.idle()
    assert [r.body["prompt"] for r in api.requests] == ["a boat", "first in A", "second in A"]
    assert fake.spec_violations == [] and api.spec_violations == []
