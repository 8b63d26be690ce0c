"""Private results end to end: only the requester sees them, the channel never does.

A member turns them on for every request (``/settings set private``) or for one (the
``private`` option of /imagine, /edit, /vary, /blend, which wins both ways). The result is an
ephemeral follow-up while the interaction's token lives, else a DM; a failure's note takes the
same routes. Buttons on an ephemeral result work and make private results again; Delete
removes the ephemeral message itself (through the click's own interaction: Discord does not
know ephemeral messages in the channel).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from bot.config import JobsSettings, Settings
from bot.db.models import JobStatus
from bot.jobs import store
from bot.testing.discord import FakeDiscord, InteractionHandle, P, StoredMessage
from bot.testing.harness import Harness, en, job_id_of, run_bot, seen_ids
from bot.testing.images import png_bytes
from bot.testing.openai_api import FakeImagesAPI

PROMPT = "a secret garden"


def public_posts(fake: FakeDiscord, before: set[int]) -> list[StoredMessage]:
    """Everything the bot made visible to the channel since ``before``: channel posts and
    non-ephemeral interaction messages."""
    return [
        m
        for m in fake.state.messages.values()
        if m.id not in before
        and m.channel_id == fake.channel.id
        and m.source in ("channel", "followup", "response")
        and not m.ephemeral
    ]


async def settings(h: Harness, subcommand: str, options: dict[str, Any] | None = None) -> str:
    handle = await h.fake.slash("settings", options, subcommand=subcommand)
    message = await handle.wait_message()
    assert message.ephemeral
    return message.content


async def imagine(h: Harness, **options: Any) -> InteractionHandle:
    handle = await h.fake.slash("imagine", {"prompt": PROMPT, "size": "256x256", **options})
    assert (await handle.response()).ephemeral
    return handle


async def private_result(handle: InteractionHandle, h: Harness) -> StoredMessage:
    """The result among the interaction's messages (an ephemeral one), once it is recorded."""
    result = await handle.wait_message(lambda m: bool(m.attachments), timeout=10)
    await h.idle()
    return result


async def test_a_member_who_set_private_gets_the_result_only_for_them(harness: Harness) -> None:
    h, fake = harness, harness.fake
    assert (await settings(h, "set", {"private": True})).startswith("Your defaults are saved.")
    before = seen_ids(fake)

    handle = await imagine(h)
    result = await private_result(handle, h)

    assert result.ephemeral and result.source == "followup"
    assert result.embeds[0]["description"] == PROMPT
    assert public_posts(fake, before) == []
    job = await store.get_job(h.bot.storage.sessions, job_id_of(result))
    assert job is not None and job.private and job.status is JobStatus.DELIVERED
    assert handle.original is not None and handle.original.ephemeral  # the status too


async def test_the_private_option_overrides_the_default_both_ways(harness: Harness) -> None:
    h, fake = harness, harness.fake
    await settings(h, "set", {"private": True})
    before = seen_ids(fake)
    await imagine(h, private=False)
    public = await h.result(lambda m: m.id not in before)
    assert public.channel_id == fake.channel.id and not public.ephemeral

    await settings(h, "reset", {"setting": "private"})
    before = seen_ids(fake)
    handle = await imagine(h, private=True)
    result = await private_result(handle, h)
    assert result.ephemeral
    assert public_posts(fake, before) == []


async def test_a_private_result_after_the_token_expired_goes_by_dm(harness: Harness) -> None:
    h, fake = harness, harness.fake
    h.api.delay = 0.3
    before = seen_ids(fake)
    handle = await imagine(h, private=True)
    await handle.wait_message()  # the private "working" status
    fake.expire_interaction(handle)  # 15 minutes pass

    dm = fake.dm_channel(fake.user)
    result = await fake.wait_for_message(lambda m: bool(m.attachments), channel=dm, timeout=10)
    await h.idle()

    assert result.content == en(h, "result.private_by_dm", channel_id=fake.channel.id)
    assert public_posts(fake, before) == []
    job = await store.get_job(h.bot.storage.sessions, job_id_of(result))
    assert job is not None and job.status is JobStatus.DELIVERED and job.result_channel_id == dm.id


async def test_a_private_failure_after_the_token_expired_is_told_by_dm(harness: Harness) -> None:
    h, fake = harness, harness.fake
    h.api.delay = 0.3
    h.api.safety_next()
    before = seen_ids(fake)
    handle = await imagine(h, private=True)
    await handle.wait_message()
    fake.expire_interaction(handle)

    dm = fake.dm_channel(fake.user)
    note = await fake.wait_for_message(lambda m: True, channel=dm, timeout=10)
    await h.idle()

    assert "safety" in note.content.lower()
    assert public_posts(fake, before) == []


async def test_a_button_on_a_private_result_makes_a_private_result(harness: Harness) -> None:
    h, fake = harness, harness.fake
    handle = await imagine(h, private=True)  # private by the option only: no default set
    result = await private_result(handle, h)
    before = seen_ids(fake)

    custom_id = f"ib:act:vary_strong:{job_id_of(result)}:0"
    click = await fake.click(result, custom_id, user=fake.user)
    assert (await click.response()).ephemeral
    varied = await private_result(click, h)

    assert varied.ephemeral and varied.embeds[0]["title"] == "Vary (Strong) of image 1"
    assert job_id_of(varied) != job_id_of(result)
    sent = h.api.requests[-1]  # the ephemeral result's own image, read back from Discord
    assert sent.path.endswith("/variations") and sent.file("image") is not None
    assert public_posts(fake, before) == []
    job = await store.get_job(h.bot.storage.sessions, job_id_of(varied))
    assert job is not None and job.private


async def test_delete_on_a_private_result_deletes_it(harness: Harness) -> None:
    h, fake = harness, harness.fake
    handle = await imagine(h, private=True)
    result = await private_result(handle, h)

    click = await fake.click(result, f"ib:delete:{job_id_of(result)}", user=fake.user)
    answer = await click.wait_message(lambda m: m is not result)

    assert answer.ephemeral and answer.content == "Deleted."
    assert result.deleted
    job = await store.get_job(h.bot.storage.sessions, job_id_of(result))
    assert job is not None and job.result_message_id is None
    # the ephemeral message went through the click's webhook, not the channel's endpoint
    deletes = [r for r in fake.requests if r.method == "DELETE"]
    assert [r.path.startswith("/webhooks/") for r in deletes] == [True]
    assert all(r.status == 204 for r in deletes)


async def test_settings_show_and_reset_private(harness: Harness) -> None:
    h = harness
    saved = await settings(h, "set", {"private": True, "count": 2})
    assert saved.splitlines()[2:] == [
        "- count: 2",
        "- private results: " + en(h, "settings.member.private_on"),
    ]
    assert (await settings(h, "show")).splitlines()[1:] == saved.splitlines()[2:]

    one = await settings(h, "reset", {"setting": "private"})
    assert one.splitlines() == [
        "Your default private results is forgotten.",
        "Your own defaults, used for the options you leave out:",
        "- count: 2",
    ]
    await settings(h, "set", {"private": True})
    assert await settings(h, "reset") == en(h, "settings.member.reset_all")
    assert await settings(h, "show") == en(h, "settings.member.none")


async def test_a_reaction_by_a_member_with_private_results_is_answered_by_dm(
    harness: Harness,
) -> None:
    """A reaction has no interaction to answer privately: the variation comes by DM."""
    h, fake = harness, harness.fake
    before = seen_ids(fake)
    await imagine(h)
    public = await h.result(lambda m: m.id not in before)
    await h.idle()
    await settings(h, "set", {"private": True})
    before = seen_ids(fake)

    await fake.react(public, "🔄", user=fake.user)

    dm = fake.dm_channel(fake.user)
    varied = await fake.wait_for_message(lambda m: bool(m.attachments), channel=dm, timeout=10)
    await h.idle()
    assert varied.embeds[0]["title"] == "Variation of image 1"
    assert public_posts(fake, before) == []


async def test_a_private_job_interrupted_after_its_token_expired_is_told_by_dm(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    """The bot stops while a private job runs, and its token dies meanwhile: the notice that
    it was interrupted comes by DM, never in the channel."""
    fake, api = fake_discord, fake_images_api
    settings = settings_factory(jobs=JobsSettings(concurrency=1))
    api.delay = 30.0
    async with run_bot(fake, api, settings) as first:
        handle = await imagine(first, private=True)
        async with asyncio.timeout(10):
            while not api.requests:  # noqa: ASYNC110 - the fake API has no event to wait on
                await asyncio.sleep(0.01)
        fake.expire_interaction(handle)
    api.delay = 0.0
    before = seen_ids(fake)
    async with run_bot(fake, api, settings) as second:
        dm = fake.dm_channel(fake.user)
        notice = await fake.wait_for_message(lambda m: True, channel=dm, timeout=10)
        await second.idle()
        assert notice.content == (f"{fake.channel.mention} {en(second, 'status.interrupted_dm')}")
        assert public_posts(fake, before) == []
    assert fake.spec_violations == [] and api.spec_violations == []


async def test_vary_with_the_private_option_is_private(harness: Harness) -> None:
    h, fake = harness, harness.fake
    upload = fake.add_attachment(png_bytes(300, 300), "cat.png")
    before = seen_ids(fake)

    handle = await fake.slash("vary", {"image": upload, "size": "256x256", "private": True})
    result = await private_result(handle, h)

    assert result.ephemeral and h.api.requests[-1].path.endswith("/variations")
    assert public_posts(fake, before) == []


async def test_a_private_reaction_works_where_the_bot_may_not_post(harness: Harness) -> None:
    """A variation that goes by DM does not need the channel: it is not refused for it."""
    h, fake = harness, harness.fake
    before = seen_ids(fake)
    await imagine(h)
    public = await h.result(lambda m: m.id not in before)
    await h.idle()
    await settings(h, "set", {"private": True})
    fake.set_bot_permissions(fake.channel, P.VIEW_CHANNEL | P.READ_MESSAGE_HISTORY)
    await fake.flush()

    await fake.react(public, "🔄", user=fake.user)

    dm = fake.dm_channel(fake.user)
    varied = await fake.wait_for_message(lambda m: bool(m.attachments), channel=dm, timeout=10)
    assert varied.embeds[0]["title"] == "Variation of image 1"
