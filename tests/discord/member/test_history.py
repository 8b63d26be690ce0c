"""/history end to end: a member's recent results in this server, privately, ten to a page,
newest first, each with its prompt, date, cost and a jump link; the page buttons (persistent
custom_ids) turn only the member's own pages.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from bot.config import JobsSettings, Settings
from bot.testing.discord import FakeDiscord, StoredMessage
from bot.testing.harness import Harness, en, job_id_of, made, run_bot
from bot.testing.openai_api import FakeImagesAPI


@pytest.fixture
async def bot(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> AsyncIterator[Harness]:
    jobs = JobsSettings(max_queued_per_member=100, member_requests_per_minute=1000)
    async with run_bot(fake_discord, fake_images_api, settings_factory(jobs=jobs)) as h:
        yield h
    assert fake_discord.spec_violations == []


async def history(h: Harness) -> StoredMessage:
    handle = await h.fake.slash("history")
    message = await handle.wait_message()
    assert message.ephemeral
    return message


async def test_a_member_without_results_is_told_so(bot: Harness) -> None:
    assert (await history(bot)).content == en(bot, "history.none")


async def test_history_lists_the_results_with_a_jump_link_and_pages(bot: Harness) -> None:
    fake = bot.fake
    results = [await made(bot, fake.user) for _ in range(11)]
    await made(bot, fake.admin)  # someone else's: not listed

    first = await history(bot)

    lines = first.content.splitlines()
    assert lines[0] == "Your results in this server (page 1 of 2):"
    assert len(lines) == 11
    newest = results[-1]
    link = f"https://discord.com/channels/{fake.guild.id}/{newest.channel_id}/{newest.id}"
    assert lines[1].startswith(f"- #{job_id_of(newest)} · a lighthouse · <t:")
    assert lines[1].endswith(f"· [open]({link})")
    assert "· $0.02 ·" in lines[1]  # dall-e-2 1024x1024
    assert first.custom_ids == [f"ib:hist:{fake.user.id}:1"]

    turned = await fake.click(first, f"ib:hist:{fake.user.id}:1")
    assert (await turned.response()).type == 7  # the same message, edited
    lines = first.content.splitlines()
    assert lines[0] == "Your results in this server (page 2 of 2):"
    oldest = results[0]
    assert len(lines) == 2 and lines[1].endswith(f"/{oldest.channel_id}/{oldest.id})")
    assert first.custom_ids == [f"ib:hist:{fake.user.id}:0"]  # back to page 1 only


async def test_another_member_cannot_turn_the_pages(bot: Harness) -> None:
    fake = bot.fake
    for _ in range(11):
        await made(bot, fake.user)
    first = await history(bot)

    clicked = await fake.click(first, f"ib:hist:{fake.user.id}:1", user=fake.admin)

    response = await clicked.response()
    assert response.ephemeral
    assert response.data["content"] == en(bot, "error.not_your_history")
    assert first.content.splitlines()[0].endswith("(page 1 of 2):")
