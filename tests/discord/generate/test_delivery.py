"""Results reach the member by whatever route still works: follow-up, channel, DM.

Discord refuses a follow-up when the interaction token is older than 15 minutes (50027) or for
other reasons (unknown webhook 10015); the result then goes to the channel as a normal message
that pings only the requester, and when the bot may not post there, to the requester by DM.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot.db.models import Job, JobStatus
from bot.jobs import store
from bot.testing.discord import FakeDiscord, InteractionHandle, P, StoredMessage
from bot.testing.harness import Harness, job_id_of, new_result, run_bot, seen_ids
from bot.testing.openai_api import FakeImagesAPI

#: The whole bot on SQLite and on PostgreSQL (tests/conftest.py: both_engines).
pytestmark = [pytest.mark.both_engines, pytest.mark.usefixtures("engine")]

PROMPT = "a paper boat on a puddle"


async def imagine(harness: Harness, n: int = 1, prompt: str = PROMPT) -> InteractionHandle:
    handle = await harness.fake.slash("imagine", {"prompt": prompt, "count": n, "size": "256x256"})
    assert (await handle.response()).ephemeral
    return handle


def is_result_for(prompt: str):  # type: ignore[no-untyped-def]
    return lambda m: bool(m.embeds) and m.embeds[0].get("description") == prompt


async def test_a_normal_result_is_the_interactions_follow_up(harness: Harness) -> None:
    fake = harness.fake
    handle = await imagine(harness, n=2)
    result = await new_result(harness, set())
    assert result.source == "followup" and result in handle.followups
    assert not result.ephemeral and result.pinged_ids == [fake.user.id]
    status = handle.original
    assert status is not None and status.ephemeral and status is not result
    job = await store.get_job(harness.bot.storage.sessions, job_id_of(result))
    assert job is not None and job.status == JobStatus.DELIVERED
    assert job.result_message_id == result.id and job.result_channel_id == fake.channel.id


async def test_an_unknown_webhook_sends_the_result_to_the_channel(harness: Harness) -> None:
    fake = harness.fake
    fake.fail_next("POST", r"/webhooks/", 404, 10015, "Unknown Webhook")
    await imagine(harness, n=2)
    result = await new_result(harness, set())
    assert result.source == "channel" and result.channel_id == fake.channel.id
    assert result.content == fake.user.mention and result.pinged_ids == [fake.user.id]
    assert result.allowed_mentions is not None
    assert result.allowed_mentions.get("parse") == []
    assert len(result.attachments) == 2 and result.embeds[0]["description"] == PROMPT
    # the channel post is the job's result: its buttons work
    before = seen_ids(fake)
    click = await fake.click(result, f"ib:vary:{job_id_of(result)}:1", user=fake.admin)
    assert (await click.response()).ephemeral
    varied = await new_result(harness, before)
    assert varied.embeds[0]["title"] == "Variation of image 2"


async def test_an_invalid_webhook_token_sends_the_result_to_the_channel(harness: Harness) -> None:
    fake = harness.fake
    fake.fail_next("POST", r"/webhooks/", 401, 50027, "Invalid Webhook Token")
    await imagine(harness)
    result = await new_result(harness, set())
    assert result.source == "channel" and result.pinged_ids == [fake.user.id]


async def test_a_job_finishing_after_the_token_expired_goes_to_the_channel(
    harness: Harness,
) -> None:
    fake, api = harness.fake, harness.api
    api.delay = 0.3
    handle = await imagine(harness, n=2)
    await handle.wait_message()  # the private "working" status
    fake.expire_interaction(handle)
    result = await new_result(harness, set())
    assert result.source == "channel" and result.pinged_ids == [fake.user.id]
    assert result.content == fake.user.mention
    assert handle.followups == [] or all(m.ephemeral for m in handle.followups)


async def test_a_result_goes_by_dm_when_the_channel_is_not_writable(harness: Harness) -> None:
    fake = harness.fake
    fake.set_bot_permissions(fake.channel, P.VIEW_CHANNEL | P.READ_MESSAGE_HISTORY)
    await fake.flush()
    fake.fail_next("POST", r"/webhooks/", 404, 10015, "Unknown Webhook")
    await imagine(harness, n=2)
    dm = fake.dm_channel(fake.user)
    result = await new_result(harness, set())
    assert result.channel_id == dm.id and result.guild_id is None
    assert len(result.attachments) == 2
    assert fake.channel.mention in result.content  # says why the images came by DM
    assert [m for m in fake.messages() if m.source == "channel"] == []
    job = await store.get_job(harness.bot.storage.sessions, job_id_of(result))
    assert job is not None and job.result_channel_id == dm.id
    assert job.status == JobStatus.DELIVERED


async def test_a_result_nobody_can_receive_is_kept(harness: Harness) -> None:
    fake = harness.fake
    closed = fake.add_member(fake.guild, "hermit", accepts_dms=False)
    fake.set_bot_permissions(fake.channel, P.VIEW_CHANNEL | P.READ_MESSAGE_HISTORY)
    await fake.flush()
    fake.fail_next("POST", r"/webhooks/", 404, 10015, "Unknown Webhook")
    handle = await harness.fake.slash("imagine", {"prompt": PROMPT, "size": "256x256"}, user=closed)
    await handle.wait_message()  # the job is queued
    await harness.idle()
    (job,) = [await store.get_job(harness.bot.storage.sessions, 1)]
    assert job is not None and job.status == JobStatus.SUCCEEDED  # not delivered, not dropped
    assert job.result_message_id is None
    outputs = await store.images_of(harness.bot.storage.sessions, job.id, _output_role())
    assert len(outputs) == 1  # the paid-for image is still stored
    # and the member is told the images are made and will follow
    late = harness.bot.catalog.text("status.late")
    assert (await handle.wait_message(lambda m: m.content == late)).ephemeral


async def test_a_late_working_update_does_not_bring_back_a_finished_status(
    harness: Harness,
) -> None:
    """On the shared queue the claim's "working" update comes from another task than the
    failure: arriving after it, it must not turn the member's status back to "Making"."""
    harness.api.safety_next()
    handle = await imagine(harness)
    await handle.wait_message(lambda m: "safety" in m.content.lower())
    await harness.idle()
    async with harness.bot.storage.sessions() as session:
        (job,) = (await session.execute(select(Job))).scalars()
    job.interaction_token = handle.record.token  # as the claim's copy in memory still has it
    await harness.bot.delivery.status.queued(job, None)  # the late claim notice
    await harness.fake.flush()
    status = handle.original
    assert status is not None and "safety" in status.content.lower()


def _output_role():  # type: ignore[no-untyped-def]
    from bot.db.models import ImageRole

    return ImageRole.OUTPUT


async def test_a_failure_while_the_token_lives_edits_the_private_status(
    harness: Harness,
) -> None:
    fake, api = harness.fake, harness.api
    api.safety_next()
    handle = await imagine(harness)
    await handle.wait_message(lambda m: "safety" in m.content.lower())
    await harness.idle()
    status = handle.original
    assert status is not None and status.ephemeral
    assert "safety" in status.content.lower()
    assert [m for m in fake.messages() if m.source == "channel"] == []


async def test_a_failure_after_the_token_expired_is_told_in_the_channel(
    harness: Harness,
) -> None:
    fake, api = harness.fake, harness.api
    api.delay = 0.3
    api.safety_next()
    handle = await imagine(harness)
    await handle.wait_message()
    fake.expire_interaction(handle)
    note = await fake.wait_for_message(lambda m: True, timeout=10)
    await harness.idle()
    assert note.source == "channel" and note.channel_id == fake.channel.id
    assert note.content.startswith(fake.user.mention)
    assert note.pinged_ids == [fake.user.id] and "safety" in note.content.lower()
    assert not note.attachments and note.components == []


async def test_a_failure_after_expiry_in_a_closed_channel_is_told_by_dm(
    harness: Harness,
) -> None:
    fake, api = harness.fake, harness.api
    api.delay = 0.3
    api.safety_next()
    handle = await imagine(harness)
    await handle.wait_message()
    fake.set_bot_permissions(fake.channel, P.VIEW_CHANNEL | P.READ_MESSAGE_HISTORY)
    fake.expire_interaction(handle)
    await fake.flush()
    dm = fake.dm_channel(fake.user)
    note: StoredMessage = await fake.wait_for_message(lambda m: True, channel=dm, timeout=10)
    assert "safety" in note.content.lower()
    assert fake.channel.mention in note.content


async def test_a_token_near_its_end_is_not_even_tried(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past 14.5 minutes the follow-up is skipped: the channel post comes without a refusal."""
    from bot.discord.generate import _status as status

    monkeypatch.setattr(status, "TOKEN_LIFETIME", timedelta(seconds=-1))
    fake = harness.fake
    await imagine(harness)
    result = await new_result(harness, set())
    assert result.source == "channel" and result.pinged_ids == [fake.user.id]
    refused = [r for r in fake.requests if r.path.startswith("/webhooks/") and r.status >= 400]
    assert refused == []
    assert not any(r.method == "POST" and r.path.startswith("/webhooks/") for r in fake.requests)


# --- every part of a result; tokens; pruning in the bot -----------------------------------------


async def split_result(harness: Harness, n: int = 3) -> list[StoredMessage]:
    """A result the upload limit splits over several messages (noise does not compress)."""
    fake = harness.fake
    harness.api.noise_bits = 8  # a 256x256 answer is ~200 KB as PNG, ~35-55 KB as WebP
    guild = fake.add_guild("Small Server", upload_limit=80_000)
    channel = fake.add_channel(guild, "art")
    member = fake.add_member(guild, "carol")
    await fake.flush()
    before = seen_ids(fake)
    await fake.slash(
        "imagine", {"prompt": PROMPT, "count": n, "size": "256x256"}, channel=channel, user=member
    )
    await new_result(harness, before)
    parts = [
        m
        for m in fake.messages(channel, sources=("channel", "followup"))
        if m.attachments and m.id not in before
    ]
    assert len(parts) >= 2
    return sorted(parts, key=lambda m: m.id)


async def test_a_reaction_on_any_part_of_a_split_result_varies_that_image(
    harness: Harness,
) -> None:
    fake = harness.fake
    parts = await split_result(harness, n=3)
    last = parts[-1]
    assert any(a.filename.startswith("image_3.") for a in last.attachments)
    # Small variations: a reaction has no interaction telling the server's upload limit.
    harness.api.noise_bits = 0
    before = seen_ids(fake)
    member = next(m for m in fake.state.guilds[last.guild_id].members.values() if m.name == "carol")
    await fake.react(last, "3️⃣", user=member)
    varied = await new_result(harness, before)
    assert varied.embeds[0]["title"] == "Variation of image 3"
    assert job_id_of(varied) != job_id_of(parts[0])
    sent = harness.api.requests[-1].file("image")
    assert harness.api.requests[-1].path.endswith("/variations") and sent is not None


async def test_interaction_tokens_are_gone_once_the_last_word_is_said(harness: Harness) -> None:
    """A token is a credential for 15 minutes: none stays in the database after it is used."""
    sessions = harness.bot.storage.sessions
    await imagine(harness)
    result = await new_result(harness, set())
    delivered = await store.get_job(sessions, job_id_of(result))
    assert delivered is not None and delivered.status == JobStatus.DELIVERED
    assert delivered.interaction_token is None

    harness.api.safety_next()
    handle = await imagine(harness)
    await handle.wait_message(lambda m: "safety" in m.content.lower())
    await harness.idle()
    failed = await store.get_job(sessions, delivered.id + 1)
    assert failed is not None and failed.status == JobStatus.FAILED
    assert failed.interaction_token is None


async def test_the_bot_prunes_old_images_by_itself(
    fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI, settings_factory: Any
) -> None:
    from bot.app import open_storage
    from bot.db.models import ImageRole, utcnow
    from bot.generation import ImageOrder
    from bot.jobs.store import JobOrigin
    from bot.providers import Operation

    settings = settings_factory()
    async with open_storage(settings) as storage, storage.sessions.begin() as session:
        order = ImageOrder(Operation.VARY, image=b"x")
        job = store.new_job(
            order,
            JobOrigin(
                user_id=1, guild_id=None, channel_id=None, parent_channel_id=None, role_ids=()
            ),
            "dall-e-2",
            0,
            "vary",
        )
        job.status, job.finished_at = JobStatus.DELIVERED, utcnow() - timedelta(days=40)
        session.add(job)
        await session.flush()
        session.add_all(store.input_images(job.id, order, mime="image/png"))
    async with run_bot(fake_discord, fake_images_api, settings) as harness:
        sessions = harness.bot.storage.sessions
        async with asyncio.timeout(10):
            while await store.images_of(sessions, job.id, ImageRole.INPUT):  # noqa: ASYNC110
                await asyncio.sleep(0.05)  # the database has no event to wait on
        pruned = await store.get_job(sessions, job.id)
        assert pruned is not None and pruned.pruned_at is not None
