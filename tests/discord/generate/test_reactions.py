"""Reacting to a result varies it: 🔄 (configurable) image 1, 1️⃣-🔟 that image."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

from bot.config import Settings
from bot.testing.discord import FakeDiscord, FakeMember, FakeRole, P, StoredMessage
from bot.testing.harness import (
    ROOMY_QUOTAS,
    Harness,
    field_value,
    job_id_of,
    new_result,
    run_bot,
    seen_ids,
)
from bot.testing.images import colour_of
from bot.testing.openai_api import FakeImagesAPI


async def imagine(harness: Harness, n: int = 2, prompt: str = "a koi pond") -> StoredMessage:
    before = seen_ids(harness.fake)
    await harness.fake.slash("imagine", {"prompt": prompt, "count": n, "size": "256x256"})
    return await new_result(harness, before)


def variation_requests(api: FakeImagesAPI) -> list[str]:
    return [r.path for r in api.requests if r.path.endswith("/variations")]


async def react_and_wait(
    harness: Harness, message: StoredMessage, emoji: str, user: object
) -> StoredMessage:
    before = seen_ids(harness.fake)
    await harness.fake.react(message, emoji, user=user)  # type: ignore[arg-type]
    return await new_result(harness, before)


async def test_the_vary_emoji_varies_image_1_for_the_member_who_reacted(harness: Harness) -> None:
    fake, api = harness.fake, harness.api
    first = await imagine(harness)
    result = await react_and_wait(harness, first, "🔄", fake.admin)
    assert result.source == "channel"  # no interaction: a normal channel message
    assert result.embeds[0]["title"] == "Variation of image 1"
    assert result.content == fake.admin.mention and result.pinged_ids == [fake.admin.id]
    assert field_value(result, "Requested by") == fake.admin.mention
    assert len(result.attachments) == 2  # as many as the result had
    sent = api.requests[-1].file("image")
    assert sent is not None
    assert colour_of(sent.data) == colour_of(first.files["image_1.png"])
    assert job_id_of(result) != job_id_of(first)
    # the new result has buttons and reactions of its own
    second = await react_and_wait(harness, result, "🔄", fake.user)
    assert second.pinged_ids == [fake.user.id]


async def test_a_keycap_varies_that_image(harness: Harness) -> None:
    fake, api = harness.fake, harness.api
    first = await imagine(harness, n=3)
    result = await react_and_wait(harness, first, "2️⃣", fake.user)
    assert result.embeds[0]["title"] == "Variation of image 2"
    sent = api.requests[-1].file("image")
    assert sent is not None
    assert colour_of(sent.data) == colour_of(first.files["image_2.png"])
    result = await react_and_wait(harness, first, "3️⃣", fake.user)
    assert result.embeds[0]["title"] == "Variation of image 3"


async def test_a_keycap_beyond_the_images_is_explained_to_the_member(harness: Harness) -> None:
    fake, api = harness.fake, harness.api
    first = await imagine(harness, n=2)
    before = seen_ids(fake)
    await fake.react(first, "5️⃣", user=fake.admin)
    note = await fake.wait_for_message(lambda m: m.id not in before)
    assert note.content.startswith(fake.admin.mention)
    assert note.pinged_ids == [fake.admin.id]
    assert "image 5" in note.content and not note.attachments
    assert variation_requests(api) == []


async def test_other_emoji_and_members_own_messages_are_ignored(harness: Harness) -> None:
    fake, api = harness.fake, harness.api
    first = await imagine(harness, n=1)
    own = await fake.post_message(
        "my cat", user=fake.user, files={"cat.png": first.files["image_1.png"]}
    )
    await fake.react(own, "🔄", user=fake.admin)
    await fake.react(own, "1️⃣", user=fake.user)
    await fake.react(first, "👍", user=fake.admin)
    # a reaction that does work, afterwards: once its result is there, the others were handled
    await react_and_wait(harness, first, "🔄", fake.user)
    await harness.idle()
    assert len(variation_requests(api)) == 1
    assert [m for m in fake.messages() if m.source == "channel"] == [
        m for m in fake.messages() if m.attachments and m.source == "channel"
    ]


async def test_reactions_by_bots_are_ignored(harness: Harness) -> None:
    fake, api = harness.fake, harness.api
    first = await imagine(harness, n=1)
    other_bot = fake.add_member(fake.guild, "another-bot")
    other_bot.user.bot = True
    await fake.react(first, "🔄", user=fake.bot_user)  # the bot's own reaction
    await fake.react(first, "🔄", user=other_bot)
    await react_and_wait(harness, first, "1️⃣", fake.user)
    await harness.idle()
    assert len(variation_requests(api)) == 1
    channel_posts = [m for m in fake.messages() if m.source == "channel"]
    assert len(channel_posts) == 1 and channel_posts[0].pinged_ids == [fake.user.id]


async def test_a_configured_vary_emoji(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory()
    settings = dataclasses.replace(
        settings, discord=dataclasses.replace(settings.discord, vary_emoji="✨")
    )
    async with run_bot(fake_discord, fake_images_api, settings) as harness:
        fake = harness.fake
        first = await imagine(harness, n=1)
        await fake.react(first, "🔄", user=fake.admin)  # not the configured one any more
        result = await react_and_wait(harness, first, "✨", fake.admin)
        assert result.embeds[0]["title"] == "Variation of image 1"
        await harness.idle()
        assert len(variation_requests(fake_images_api)) == 1
    assert fake_discord.spec_violations == []
    assert fake_images_api.spec_violations == []


async def test_a_reaction_where_the_bot_may_not_post_is_explained_by_dm(
    harness: Harness,
) -> None:
    fake, api = harness.fake, harness.api
    first = await imagine(harness, n=1)
    fake.set_bot_permissions(fake.channel, P.VIEW_CHANNEL | P.READ_MESSAGE_HISTORY)
    await fake.flush()
    await fake.react(first, "🔄", user=fake.admin)
    dm = fake.dm_channel(fake.admin)
    note = await fake.wait_for_message(lambda m: True, channel=dm)
    assert "Send Messages" in note.content
    await harness.idle()
    assert variation_requests(api) == []  # nothing made (and paid for) that cannot be posted


async def test_a_failed_variation_from_a_reaction_is_told_in_the_channel(
    harness: Harness,
) -> None:
    fake, api = harness.fake, harness.api
    first = await imagine(harness, n=1)
    api.fail_next(503)
    before = seen_ids(fake)
    await fake.react(first, "🔄", user=fake.admin)
    note = await fake.wait_for_message(lambda m: m.id not in before)
    await harness.idle()
    assert note.source == "channel" and note.content.startswith(fake.admin.mention)
    assert note.pinged_ids == [fake.admin.id] and not note.attachments
    assert len(variation_requests(api)) == 1


async def test_a_reaction_on_a_deleted_result_is_ignored(harness: Harness) -> None:
    """Deleting forgets the message: a reaction that raced the deletion finds no job."""
    fake, api = harness.fake, harness.api
    first = await imagine(harness, n=1)
    other = await imagine(harness, n=1, prompt="a second pond")
    click = await fake.click(first, f"ib:delete:{job_id_of(first)}", user=fake.user)
    await click.wait_message()
    first.deleted = False  # the reaction was added just before the message disappeared
    await fake.react(first, "🔄", user=fake.admin)
    await react_and_wait(harness, other, "🔄", fake.admin)
    assert len(variation_requests(api)) == 1  # only the reaction on the live result
    sent = api.requests[-1].file("image")
    assert sent is not None and colour_of(sent.data) == colour_of(other.files["image_1.png"])


# --- the server's rules hold for reactions, and refusals cost the bot nothing ----------------


async def set_role(harness: Harness, role: FakeRole, **rule: object) -> None:
    handle = await harness.fake.slash(
        "quota", {"role": role, **rule}, subcommand="role", user=harness.fake.admin
    )
    assert (await handle.wait_message()).ephemeral


async def refusal_notes(fake: FakeDiscord, member: FakeMember, before: set[int]) -> list[str]:
    return [
        m.content
        for m in fake.messages(sources=("channel",))
        if m.id not in before and m.pinged_ids == [member.id] and not m.attachments
    ]


async def test_a_role_limited_to_0_images_gets_none_by_reacting(harness: Harness) -> None:
    fake, api = harness.fake, harness.api
    muted = fake.add_role(fake.guild, "Muted")
    mallory = fake.add_member(fake.guild, "mallory", roles=[muted])
    await set_role(harness, muted, images_per_day=0)
    first = await imagine(harness, n=1)
    before = seen_ids(fake)
    await fake.react(first, "🔄", user=mallory)
    note = await fake.wait_for_message(lambda m: m.id not in before)
    await harness.idle()
    assert note.content.startswith(f"{mallory.mention} You have used your 0 images for today")
    assert variation_requests(api) == []


async def test_an_exempt_role_keeps_its_exemption_when_reacting(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    quotas = dataclasses.replace(ROOMY_QUOTAS, member_images_per_day=1)
    async with run_bot(fake_discord, fake_images_api, settings_factory(quotas=quotas)) as harness:
        fake = harness.fake
        staff = fake.add_role(fake.guild, "Staff")
        dave = fake.add_member(fake.guild, "dave", roles=[staff])
        await set_role(harness, staff, exempt=True)
        before = seen_ids(fake)
        await fake.slash("imagine", {"prompt": "a koi", "count": 1, "size": "256x256"}, user=dave)
        first = await new_result(harness, before)  # dave's 1 image of the day, and more: exempt
        result = await react_and_wait(harness, first, "🔄", dave)
        assert result.pinged_ids == [dave.id]
        assert len(variation_requests(fake_images_api)) == 1


async def test_a_result_in_a_thread_of_the_allowed_channel_can_be_varied(harness: Harness) -> None:
    fake, api = harness.fake, harness.api
    handle = await fake.slash(
        "quota", {"channel": fake.channel}, subcommand="channels add", user=fake.admin
    )
    await handle.wait_message()
    thread = fake.add_thread(fake.channel, "koi talk")
    await fake.flush()
    before = seen_ids(fake)
    await fake.slash("imagine", {"prompt": "a koi", "count": 1, "size": "256x256"}, channel=thread)
    first = await new_result(harness, before)
    assert first.channel_id == thread.id
    result = await react_and_wait(harness, first, "🔄", fake.admin)
    assert result.channel_id == thread.id and result.pinged_ids == [fake.admin.id]
    assert len(variation_requests(api)) == 1


async def test_reaction_toggles_over_the_quota_give_one_short_lived_note_and_no_download(
    harness: Harness,
) -> None:
    """Ten toggles once the server's images for today are used up: one public note (deleting
    itself), no download from the CDN, nothing made."""
    fake, api = harness.fake, harness.api
    notices = harness.bot.generate.reactions.notices
    assert notices.lifetime == 30
    notices.lifetime = 0.5  # instead of waiting 30 s
    handle = await fake.slash("quota", {"images_per_day": 2}, subcommand="set", user=fake.admin)
    await handle.wait_message()
    first = await imagine(harness, n=2)
    before, downloads = seen_ids(fake), len(fake.cdn_requests)
    for emoji in ["🔄", "1️⃣", "2️⃣", "🔄", "1️⃣", "2️⃣", "🔄", "1️⃣", "2️⃣", "🔄"]:
        await fake.react(first, emoji, user=fake.admin)
        await fake.unreact(first, emoji, user=fake.admin)
    note = await fake.wait_for_message(lambda m: m.id not in before)
    await asyncio.sleep(1.0)  # every toggle handled, and the note's time is up
    await harness.idle()
    assert len(await refusal_notes(fake, fake.admin, before)) == 1
    assert len(fake.cdn_requests) == downloads
    assert "This server has used its 2 images for today" in note.content
    assert note.deleted
    assert variation_requests(api) == []


async def test_a_reaction_in_a_server_that_is_not_allowed_makes_nothing(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    fake = fake_discord
    async with run_bot(fake, fake_images_api, settings_factory()) as harness:
        first = await imagine(harness, n=1)
    # the operator makes the bot private to another server and restarts it
    private = dataclasses.replace(ROOMY_QUOTAS, allowed_guilds=(fake.guild.id + 1,))
    async with run_bot(fake, fake_images_api, settings_factory(quotas=private)) as harness:
        before, downloads = seen_ids(fake), len(fake.cdn_requests)
        await fake.react(first, "🔄", user=fake.admin)
        note = await fake.wait_for_message(lambda m: m.id not in before)
        await harness.idle()
        assert note.content == f"{fake.admin.mention} " + (
            "This bot is private: it doesn't make images in this server."
        )
        assert len(fake.cdn_requests) == downloads
        assert len(variation_requests(fake_images_api)) == 0
