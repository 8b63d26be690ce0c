"""/moderation audit-channel end to end: admins choose where every job of the server is logged;
each job's end and each refusal becomes an entry the poster puts there in the background, as an
embed that pings nobody, with the cost, outcome, a jump link and the result's thumbnail.

A channel that is gone or where the bot may not post never fails a member's job.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from sqlalchemy import select

from bot.db.models import AuditEntry, GuildSettings
from bot.discord.admin import _audit_poster
from bot.moderation.audit import MAX_ATTEMPTS, audit_refusal
from bot.testing.discord import FakeChannel, FakeMember, StoredMessage
from bot.testing.discord.payloads import P
from bot.testing.harness import Harness, en, job_id_of, made, synced

#: What the bot needs in the audit channel.
POSTING = P.VIEW_CHANNEL | P.SEND_MESSAGES | P.EMBED_LINKS | P.ATTACH_FILES | P.READ_MESSAGE_HISTORY


async def audit_command(
    h: Harness, options: dict[str, Any] | None = None, *, user: FakeMember | None = None
) -> str:
    """/moderation audit-channel as the admin (by default); the private answer's text."""
    handle = await h.fake.slash(
        "moderation", options, subcommand="audit-channel", user=user or h.fake.admin
    )
    message = await handle.wait_message()
    assert message.ephemeral
    return message.content


async def with_audit_channel(h: Harness, permissions: Any = POSTING) -> FakeChannel:
    channel = h.fake.add_channel(name="audit", bot_permissions=permissions)
    await h.fake.flush()
    text = await audit_command(h, {"channel": channel})
    assert text == f"Every job and refusal in this server will be logged in <#{channel.id}>."
    return channel


async def entry_in(h: Harness, channel: FakeChannel, count: int = 1) -> list[StoredMessage]:
    """The first ``count`` entries the poster put in ``channel`` (waits for them)."""
    for _ in range(100):
        found = h.fake.messages(channel)
        if len(found) >= count:
            return found[:count]
        await asyncio.sleep(0.05)
    raise AssertionError(f"{len(h.fake.messages(channel))} entries in the audit channel")


def embed_fields(message: StoredMessage) -> dict[str, str]:
    return {f["name"]: f["value"] for f in message.embeds[0].get("fields") or []}


async def outbox(h: Harness) -> list[AuditEntry]:
    async with h.bot.storage.sessions() as session:
        return list(await session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


async def marked_posted(h: Harness) -> list[AuditEntry]:
    """The outbox once every entry in it is marked posted (the poster marks an entry after
    Discord took it, so the message can be seen a moment before the mark)."""
    for _ in range(100):
        entries = await outbox(h)
        if entries and all(entry.posted_at is not None for entry in entries):
            return entries
        await asyncio.sleep(0.05)
    raise AssertionError(f"not all marked posted: {[e.posted_at for e in await outbox(h)]}")


async def test_each_job_gets_an_entry_with_its_details_that_pings_nobody(bot: Harness) -> None:
    channel = await with_audit_channel(bot)
    result = await made(bot, bot.fake.user)
    (entry,) = await entry_in(bot, channel)
    (embed,) = entry.embeds
    assert embed["title"] == "/imagine"
    assert embed["description"] == "a lighthouse"
    fields = embed_fields(entry)
    assert fields["Requester"] == f"<@{bot.fake.user.id}>"
    assert fields["Outcome"] == "delivered"
    assert fields["Cost"].startswith("$")
    link = f"https://discord.com/channels/{bot.fake.guild.id}/{result.channel_id}/{result.id}"
    assert fields["Result"] == f"[Jump to the result]({link})"
    assert embed["thumbnail"]["url"] == result.attachments[0].url
    assert embed["footer"]["text"] == f"Job {job_id_of(result)}"
    assert entry.allowed_mentions == {"parse": []}
    (row,) = await marked_posted(bot)
    assert row.job_id == job_id_of(result)


async def test_a_private_job_is_logged_too_and_says_it_is_private(bot: Harness) -> None:
    """Moderators see who asked for what even when only the requester sees the result: the
    entry is written, without a link no moderator could open."""
    channel = await with_audit_channel(bot)
    handle = await bot.fake.slash(
        "imagine", {"prompt": "a lighthouse", "private": True}, user=bot.fake.user
    )
    result = await handle.wait_message(lambda m: bool(m.attachments), timeout=10)
    assert result.ephemeral
    (entry,) = await entry_in(bot, channel)
    fields = embed_fields(entry)
    assert entry.embeds[0]["description"] == "a lighthouse"
    assert fields["Requester"] == f"<@{bot.fake.user.id}>" and fields["Outcome"] == "delivered"
    assert fields["Result"] == en(bot, "audit.entry.private")
    assert "thumbnail" not in entry.embeds[0]


async def test_a_failed_job_is_logged_with_its_error(bot: Harness) -> None:
    channel = await with_audit_channel(bot)
    bot.api.fail_next(400, code="invalid_prompt", message="No.")
    await bot.fake.slash("imagine", {"prompt": "a lighthouse"}, user=bot.fake.user)
    (entry,) = await entry_in(bot, channel)
    fields = embed_fields(entry)
    assert fields["Outcome"].startswith("failed (")
    assert fields["Cost"] == "$0"
    assert "Result" not in fields and "thumbnail" not in entry.embeds[0]


@pytest.mark.parametrize(
    ("reason", "details", "shown"),
    [
        ("blocklist", None, "refused: blocked term"),
        (
            "precheck",
            {"categories": ["violence", "harassment"]},
            "refused: content check (violence, harassment)",
        ),
    ],
)
async def test_refusals_are_logged(
    bot: Harness, reason: str, details: dict[str, Any] | None, shown: str
) -> None:
    channel = await with_audit_channel(bot)
    await audit_refusal(
        bot.bot.storage.sessions,
        guild_id=bot.fake.guild.id,
        user_id=bot.fake.user.id,
        command="imagine",
        prompt="something refused",
        reason=reason,
        details=details,
    )
    (entry,) = await entry_in(bot, channel)
    fields = embed_fields(entry)
    assert fields["Outcome"] == shown
    assert fields["Requester"] == f"<@{bot.fake.user.id}>"
    assert entry.embeds[0]["description"] == "something refused"
    assert entry.allowed_mentions == {"parse": []}


async def test_without_an_audit_channel_nothing_is_written(bot: Harness) -> None:
    assert await audit_command(bot) == (
        "This server has no audit channel. Choose one with the channel option."
    )
    await made(bot, bot.fake.user)
    assert await outbox(bot) == []


async def test_turned_off_it_logs_no_more(bot: Harness) -> None:
    channel = await with_audit_channel(bot)
    assert (
        await audit_command(bot)
        == f"Jobs and refusals in this server are logged in <#{channel.id}>."
    )
    assert await audit_command(bot, {"off": True}) == (
        "The audit channel is off: jobs are no longer logged."
    )
    await made(bot, bot.fake.user)
    assert await outbox(bot) == []
    assert "no audit channel" in await audit_command(bot)


async def test_a_channel_the_bot_cannot_post_in_is_refused_saying_what_is_missing(
    bot: Harness,
) -> None:
    channel = bot.fake.add_channel(name="closed", bot_permissions=P.VIEW_CHANNEL | P.SEND_MESSAGES)
    await bot.fake.flush()
    text = await audit_command(bot, {"channel": channel})
    assert text == (
        f"I can't post audit entries in <#{channel.id}>: I'm missing Embed Links, Attach Files "
        "there."
    )
    async with bot.bot.storage.sessions() as session:
        stored = await session.scalar(
            select(GuildSettings.audit_channel_id).where(
                GuildSettings.guild_id == bot.fake.guild.id
            )
        )
    assert stored is None


async def test_choosing_a_channel_and_off_at_once_is_refused(bot: Harness) -> None:
    text = await audit_command(bot, {"channel": bot.fake.channel, "off": True})
    assert text == "Choose a channel or turn the audit channel off, not both."


async def test_a_plain_member_cannot_set_it(bot: Harness) -> None:
    with pytest.raises(PermissionError):  # Discord does not even offer it
        await bot.fake.slash("moderation", subcommand="audit-channel", user=bot.fake.user)
    # A server may open the command to everyone in its Integrations settings: checked again.
    synced(bot.fake, "moderation")["default_member_permissions"] = None
    text = await audit_command(bot, {"channel": bot.fake.channel}, user=bot.fake.user)
    assert text == "You need the Manage Server permission(s) to do that."
    await made(bot, bot.fake.user)
    assert await outbox(bot) == []


@pytest.mark.parametrize("problem", ["deleted", "no permission"])
async def test_a_lost_audit_channel_never_fails_the_job_and_is_logged_once(
    bot: Harness, problem: str, caplog: pytest.LogCaptureFixture
) -> None:
    channel = await with_audit_channel(bot)
    if problem == "deleted":
        bot.fake.remove_channel(channel)
    else:
        bot.fake.set_bot_permissions(channel, P.VIEW_CHANNEL)
    await bot.fake.flush()
    caplog.set_level(logging.WARNING, logger="bot.discord.admin._audit_poster")
    first = await made(bot, bot.fake.user)
    second = await made(bot, bot.fake.user)
    assert first.attachments and second.attachments  # the members got their images
    for _ in range(100):
        entries = await outbox(bot)
        if len(entries) == 2 and all(e.attempts >= MAX_ATTEMPTS for e in entries):
            break
        await asyncio.sleep(0.05)
    assert [e.posted_at for e in entries] == [None, None]
    assert all(e.attempts >= MAX_ATTEMPTS for e in entries)
    warnings = [r.getMessage() for r in caplog.records if "audit entries" in r.getMessage()]
    assert len(warnings) == 1 and str(channel.id) in warnings[0]


async def test_a_failed_post_is_tried_again_later_without_holding_up_the_next(
    bot: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_audit_poster, "FIRST_BACKOFF", 0.3)
    channel = await with_audit_channel(bot)
    bot.fake.fail_next("POST", f"/channels/{channel.id}/messages", 503, times=1)
    for reason in ("blocklist", "precheck"):
        await audit_refusal(
            bot.bot.storage.sessions,
            guild_id=bot.fake.guild.id,
            user_id=bot.fake.user.id,
            command="imagine",
            prompt=reason,
            reason=reason,
        )
    posted = await entry_in(bot, channel, 2)
    # The first entry's post failed: the second went first, the first after its pause.
    assert [m.embeds[0]["description"] for m in posted] == ["precheck", "blocklist"]
    first, second = await marked_posted(bot)
    assert (first.attempts, second.attempts) == (1, 0)
