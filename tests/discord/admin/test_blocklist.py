"""/moderation blocklist end to end: a server's admins block terms, members' prompts with them
are refused before anything is queued, on every way in; the operator's terms apply everywhere.

The bot runs with one operator term, ``dragon*``, and a second server that has none of the
first server's terms. A refusal is answered at once, privately, names no term, makes no
request to the image API, queues no job and uses no quota.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from bot.config import ModerationSettings, Settings
from bot.db.models import AuditEntry, GuildSettings, Intake, Job
from bot.generation import ImageOrder
from bot.jobs.intake import IntakeOrigin, IntakeRequest, order_options, pending_intakes
from bot.moderation import blocklist
from bot.moderation.blocklist import MAX_TERMS
from bot.providers import Operation
from bot.testing.discord import FakeChannel, FakeDiscord, FakeGuild, FakeMember, StoredMessage
from bot.testing.discord.models import walk_components
from bot.testing.discord.payloads import P
from bot.testing.harness import Harness, job_id_of, new_result, run_bot, seen_ids, synced
from bot.testing.openai_api import FakeImagesAPI

REFUSAL = "That prompt contains a term this server doesn't allow. Please rephrase it."
TRANSLATED = {"ko", "ja", "zh-CN", "zh-TW"}


@pytest.fixture
def other(fake_discord: FakeDiscord) -> tuple[FakeGuild, FakeChannel, FakeMember]:
    """Another server (added before the bot connects), its channel and a member of it."""
    guild = fake_discord.add_guild("Other Server")
    return guild, fake_discord.add_channel(guild, "general"), fake_discord.add_member(guild, "eve")


@pytest.fixture
async def bot(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
    other: tuple[FakeGuild, FakeChannel, FakeMember],
) -> AsyncIterator[Harness]:
    settings = settings_factory(moderation=ModerationSettings(blocked_terms=("Dragon*",)))
    async with run_bot(fake_discord, fake_images_api, settings) as h:
        yield h
    assert fake_discord.spec_violations == []
    assert fake_images_api.spec_violations == []


async def blocklist_command(
    h: Harness, subcommand: str, term: str | None = None, *, user: FakeMember | None = None
) -> str:
    """/moderation blocklist <subcommand> [term] as the admin (by default); the answer's text."""
    options = {"term": term} if term is not None else None
    handle = await h.fake.slash(
        "moderation", options, subcommand=f"blocklist {subcommand}", user=user or h.fake.admin
    )
    message = await handle.wait_message()
    assert message.ephemeral
    return message.content


async def imagine(
    h: Harness,
    prompt: str,
    *,
    user: FakeMember | None = None,
    channel: FakeChannel | None = None,
) -> str:
    """/imagine ``prompt``; the private answer (a refusal, or the "working" status)."""
    handle = await h.fake.slash(
        "imagine", {"prompt": prompt, "size": "256x256"}, user=user, channel=channel
    )
    response = await handle.response()
    assert response.ephemeral
    if response.type == 4:  # answered at once, never deferred: a refusal
        assert response.data["content"] == REFUSAL
    message = await handle.wait_message(lambda m: bool(m.content))
    assert message.ephemeral
    return message.content


async def queued_jobs(h: Harness) -> int:
    async with h.bot.storage.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Job)) or 0)


async def assert_refused_for_free(h: Harness, answer: str, calls_before: int = 0) -> None:
    """The refusal, and nothing made, queued, left to finish or counted."""
    assert answer == REFUSAL
    await h.idle()
    assert len(h.api.requests) == calls_before
    async with h.bot.storage.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Intake)) == 0
    usage = await h.fake.slash("usage", subcommand="me", user=h.fake.user)
    assert (await usage.wait_message()).content.startswith("**You today:** 0 of 100,000 images")


# --- the command ------------------------------------------------------------------------------


async def test_moderation_blocklist_is_for_server_managers_and_translated(bot: Harness) -> None:
    command = synced(bot.fake, "moderation")
    assert command["default_member_permissions"] == str(int(P.MANAGE_GUILD))
    assert command.get("contexts") == [0]
    group = next(o for o in command["options"] if o["name"] == "blocklist")
    assert group["type"] == 2 and set(group["name_localizations"]) == TRANSLATED
    subcommands = {o["name"]: o for o in group["options"]}
    assert set(subcommands) == {"add", "remove", "list"}
    (remove_term,) = subcommands["remove"]["options"]
    assert remove_term["name"] == "term" and remove_term["autocomplete"]
    assert set(remove_term["name_localizations"]) == TRANSLATED


async def test_the_admin_adds_lists_and_removes_terms(bot: Harness) -> None:
    assert await blocklist_command(bot, "list") == (
        "This server has no blocked terms.\n"
        "The bot's operator also blocks 1 term(s) on every server."
    )
    assert await blocklist_command(bot, "add", "  ＣＡＳＴＬＥ ") == (
        f"Blocked `castle` in this server's prompts (1 of {MAX_TERMS} terms)."
    )
    assert await blocklist_command(bot, "add", "Castle") == (
        f"`castle` is already blocked here (1 of {MAX_TERMS} terms)."
    )
    await blocklist_command(bot, "add", "tower*")
    assert (await blocklist_command(bot, "list")).splitlines() == [
        f"This server's blocked terms (2 of {MAX_TERMS}):",
        "- `castle`",
        "- `tower*`",
        "The bot's operator also blocks 1 term(s) on every server.",
    ]
    assert await blocklist_command(bot, "remove", "CASTLE") == "`castle` is no longer blocked here."
    assert await blocklist_command(bot, "remove", "castle") == (
        "`castle` is not one of this server's blocked terms."
    )
    assert await imagine(bot, "a castle by the sea") != REFUSAL


@pytest.mark.parametrize(
    ("term", "message"),
    [
        ("* *", "A blocked term needs at least one letter, number or sign besides * and spaces."),
        ("x" * 101, "A blocked term can be at most 100 characters long; that one has 101."),
    ],
)
async def test_a_term_that_cannot_be_one_is_refused_with_why(
    bot: Harness, term: str, message: str
) -> None:
    assert await blocklist_command(bot, "add", term) == message
    assert await blocklist.terms_of(bot.bot.storage.sessions, bot.fake.guild.id) == []


async def test_a_server_at_its_limit_is_told_to_remove_one_first(bot: Harness) -> None:
    for number in range(MAX_TERMS):
        await blocklist.add_term(bot.bot.storage.sessions, bot.fake.guild.id, f"t{number}", 1)
    assert await blocklist_command(bot, "add", "one more") == (
        f"This server already blocks {MAX_TERMS} terms, the most it can. Remove one first."
    )


async def test_a_long_list_says_how_many_are_not_shown_and_attaches_them_all(
    bot: Harness,
) -> None:
    terms = [f"{number:03d}" + "x" * 90 for number in range(60)]
    for term in terms:
        await blocklist.add_term(bot.bot.storage.sessions, bot.fake.guild.id, term, 1)
    handle = await bot.fake.slash("moderation", subcommand="blocklist list", user=bot.fake.admin)
    message = await handle.wait_message()

    assert message.ephemeral and len(message.content) <= 2000
    lines = message.content.splitlines()
    shown = [line for line in lines if line.startswith("- ")]
    assert 0 < len(shown) < len(terms)
    assert lines[-2] == (
        f"…and {len(terms) - len(shown)} more: the whole list is in the attached file."
    )
    assert message.files["blocked-terms.txt"].decode().splitlines() == terms


async def test_autocomplete_offers_the_servers_terms_to_managers_only(bot: Harness) -> None:
    for term in ("castle", "tower*", "cat"):
        await blocklist_command(bot, "add", term)

    async def choices(user: FakeMember, typed: str) -> list[str]:
        handle = await bot.fake.autocomplete(
            "moderation", {"term": typed}, focused="term", subcommand="blocklist remove", user=user
        )
        return [choice["value"] for choice in (await handle.response()).data["choices"]]

    assert await choices(bot.fake.admin, "") == ["castle", "cat", "tower*"]
    assert await choices(bot.fake.admin, "CA") == ["castle", "cat"]
    synced(bot.fake, "moderation")["default_member_permissions"] = None
    assert await choices(bot.fake.user, "") == []


async def test_a_member_cannot_edit_the_blocklist(bot: Harness) -> None:
    with pytest.raises(PermissionError):  # Discord does not even offer it
        await bot.fake.slash("moderation", {"term": "x"}, subcommand="blocklist add")
    # A server may open the command to everyone in its Integrations settings.
    synced(bot.fake, "moderation")["default_member_permissions"] = None
    denied = "You need the Manage Server permission(s) to do that."
    assert await blocklist_command(bot, "add", "castle", user=bot.fake.user) == denied
    assert await blocklist_command(bot, "list", user=bot.fake.user) == denied
    assert await blocklist.terms_of(bot.bot.storage.sessions, bot.fake.guild.id) == []


# --- the refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prompt",
    [
        "a CaStLe at night",
        "a ｃａｓｔｌｅ at night",  # full-width
        "a cas\u200btle at night",  # split by a zero-width space
        "a c\u00adas\u2060tle!",  # a soft hyphen and a word joiner
    ],
)
async def test_variants_of_a_blocked_term_are_refused_for_free(bot: Harness, prompt: str) -> None:
    await blocklist_command(bot, "add", "castle")
    handle = await bot.fake.slash("imagine", {"prompt": prompt})
    response = await handle.response()
    assert response.type == 4 and response.ephemeral  # answered at once, never deferred
    await assert_refused_for_free(bot, response.data["content"])
    assert await queued_jobs(bot) == 0


async def test_a_word_containing_the_term_is_not_refused_unless_a_wildcard_says_so(
    bot: Harness,
) -> None:
    await blocklist_command(bot, "add", "cast")
    before = seen_ids(bot.fake)
    assert await imagine(bot, "a castle, a broadcast") != REFUSAL
    await new_result(bot, before)
    await blocklist_command(bot, "add", "cast*")
    assert await imagine(bot, "a castle") == REFUSAL
    assert len(bot.api.requests) == 1


async def test_a_cjk_term_is_refused_inside_a_longer_run(bot: Harness) -> None:
    await blocklist_command(bot, "add", "城")
    await assert_refused_for_free(bot, await imagine(bot, "夜の古い城の絵"))


async def test_another_server_is_unaffected(
    bot: Harness, other: tuple[FakeGuild, FakeChannel, FakeMember]
) -> None:
    _, channel, eve = other
    await blocklist_command(bot, "add", "castle")
    before = seen_ids(bot.fake)
    assert await imagine(bot, "a castle", user=eve, channel=channel) != REFUSAL
    result = await new_result(bot, before)
    assert result.channel_id == channel.id


async def test_the_operators_terms_are_refused_on_every_server(
    bot: Harness, other: tuple[FakeGuild, FakeChannel, FakeMember]
) -> None:
    _, channel, eve = other
    assert await imagine(bot, "a DRAGONFLY") == REFUSAL
    assert await imagine(bot, "a red dragon", user=eve, channel=channel) == REFUSAL
    assert bot.api.requests == []
    assert await queued_jobs(bot) == 0


async def test_a_refusal_is_noted_for_the_audit_channel_without_the_term(bot: Harness) -> None:
    async with bot.bot.storage.sessions() as session, session.begin():
        session.add(GuildSettings(guild_id=bot.fake.guild.id, audit_channel_id=bot.fake.channel.id))
    await blocklist_command(bot, "add", "castle")
    assert await imagine(bot, "a castle at night") == REFUSAL

    async with bot.bot.storage.sessions() as session:
        (entry,) = (await session.scalars(select(AuditEntry))).all()
    body = json.loads(entry.body)
    assert (entry.kind, entry.guild_id, entry.channel_id) == (
        "refusal",
        bot.fake.guild.id,
        bot.fake.channel.id,
    )
    assert body["reason"] == "blocklist" and body["command"] == "imagine"
    assert body["user_id"] == bot.fake.user.id and body["prompt"] == "a castle at night"
    assert set(body) == {"user_id", "command", "prompt", "outcome", "reason"}


# --- the other ways in ------------------------------------------------------------------------


async def made(h: Harness, prompt: str) -> tuple[StoredMessage, int]:
    """A result made from ``prompt`` before its term was blocked, and its job."""
    before = seen_ids(h.fake)
    assert await imagine(h, prompt) != REFUSAL
    result = await new_result(h, before)
    return result, job_id_of(result)


async def test_remix_with_a_blocked_new_prompt_is_refused(bot: Harness) -> None:
    result, job = await made(bot, "a castle in the clouds")
    await blocklist_command(bot, "add", "tower")
    click = await bot.fake.click(result, f"ib:remix:{job}", user=bot.fake.user)
    assert (await click.response()).type == 9
    assert click.modal is not None
    (text_input,) = [c for c in walk_components(click.modal["components"]) if c.get("type") == 4]
    submitted = await bot.fake.submit_modal(click, {text_input["custom_id"]: "a TOWER instead"})

    answer = await submitted.wait_message()
    assert answer.ephemeral and answer.content == REFUSAL
    await bot.idle()
    assert len(bot.api.requests) == 1 and await queued_jobs(bot) == 1


async def test_redo_of_a_result_whose_prompt_was_blocked_since_is_refused(bot: Harness) -> None:
    result, job = await made(bot, "a castle in the clouds")
    await blocklist_command(bot, "add", "castle")
    click = await bot.fake.click(result, f"ib:redo:{job}", user=bot.fake.user)

    answer = await click.wait_message()
    assert answer.ephemeral and answer.content == REFUSAL
    await bot.idle()
    assert len(bot.api.requests) == 1 and await queued_jobs(bot) == 1


async def test_a_left_over_request_blocked_while_the_bot_was_down_is_refused(
    bot: Harness,
) -> None:
    """An acknowledged request a killed process left (an intake) whose term was blocked before
    the next start: the member is told in the channel (the token died), nothing is made."""
    fake = bot.fake
    order = ImageOrder(Operation.GENERATE, prompt="a castle", size="256x256", user_id="0")
    origin = IntakeOrigin(
        interaction_id=1,
        application_id=None,
        interaction_token=None,
        interaction_at=datetime.now(UTC),
        guild_id=fake.guild.id,
        channel_id=fake.channel.id,
        parent_channel_id=None,
        user_id=fake.user.id,
        locale="en-US",
    )
    await bot.bot.runner.intakes.open(origin, "imagine", IntakeRequest(order_options(order)))
    await blocklist_command(bot, "add", "castle")
    (intake,) = await pending_intakes(bot.bot.storage.sessions)

    await bot.bot.generate.resumer.intake_pending(intake)

    note = await fake.wait_for_message(
        lambda m: REFUSAL in m.content and not m.ephemeral, sources=("channel",)
    )
    assert note.content.startswith(fake.user.mention)
    assert bot.api.requests == [] and await queued_jobs(bot) == 0
    assert await pending_intakes(bot.bot.storage.sessions) == []


async def test_a_term_added_or_removed_is_in_force_for_the_next_request(bot: Harness) -> None:
    """The server's terms are kept between requests (issue 10): the admin's change still
    holds for the very next /imagine, not a few seconds later."""
    assert await imagine(bot, "a castle by the sea") != REFUSAL  # the terms read and kept

    await blocklist_command(bot, "add", "castle")
    assert await imagine(bot, "a castle by the sea") == REFUSAL

    await blocklist_command(bot, "remove", "castle")
    assert await imagine(bot, "a castle by the sea") != REFUSAL
