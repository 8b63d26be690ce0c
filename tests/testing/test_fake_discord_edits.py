"""The fake Discord's message edits with files and its per-route rate limits, as Discord has them.

A status message that shows previews is edited with multipart bodies whose ``attachments`` array
says which files stay (files not listed go), and edited often enough to meet Discord's rate
limits; both are checked here against the real discord.py client and raw HTTP.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator

import aiohttp
import discord
import pytest

from bot.testing.discord import FakeDiscord, InteractionHandle
from bot.testing.images import colour_of, png_bytes
from bot.testing.openapi import schema_validator
from tests.testing.test_fake_discord import MiniBot

RED, BLUE, GREEN = (
    png_bytes(8, 8, (255, 0, 0)),
    png_bytes(8, 8, (0, 0, 255)),
    png_bytes(8, 8, (0, 255, 0)),
)


@pytest.fixture
async def answered(
    fake_discord: FakeDiscord,
) -> AsyncIterator[tuple[FakeDiscord, InteractionHandle]]:
    """A slash command the bot answered: its interaction webhook is ours to edit."""
    async with fake_discord.running(MiniBot(fake_discord.guild.id)):
        handle = await fake_discord.slash("imagine", {"prompt": "a kite"})
        await handle.wait_message(lambda m: bool(m.attachments))
        yield fake_discord, handle
    assert fake_discord.spec_violations == []


def webhook(
    fake: FakeDiscord, handle: InteractionHandle, session: aiohttp.ClientSession
) -> discord.Webhook:
    return discord.Webhook.partial(fake.application_id, handle.token, session=session)


def file(data: bytes, name: str = "preview.png") -> discord.File:
    return discord.File(io.BytesIO(data), filename=name)


async def test_attachments_listed_in_an_edit_stay_the_others_go(
    answered: tuple[FakeDiscord, InteractionHandle],
) -> None:
    fake, handle = answered
    async with aiohttp.ClientSession() as session:
        hook = webhook(fake, handle, session)
        await hook.edit_message("@original", content="10%", attachments=[file(RED)])
        assert handle.original is not None
        assert [colour_of(a.data) for a in handle.original.attachments] == [(255, 0, 0)]
        # A new file in place of the old: only the new one is listed.
        message = await hook.edit_message("@original", content="50%", attachments=[file(BLUE)])
        assert [colour_of(a.data) for a in handle.original.attachments] == [(0, 0, 255)]
        # Content alone: the files stay.
        await hook.edit_message("@original", content="60%")
        assert [colour_of(a.data) for a in handle.original.attachments] == [(0, 0, 255)]
        # Keep one by its id and add another.
        kept = message.attachments[0]
        await hook.edit_message("@original", attachments=[kept, file(GREEN, "other.png")])
        assert [a.filename for a in handle.original.attachments] == ["preview.png", "other.png"]
        assert handle.original.attachments[0].id == kept.id
        # An empty list removes them all.
        await hook.edit_message("@original", content="done", attachments=[])
        assert handle.original.attachments == [] and handle.original.content == "done"


async def test_a_route_limit_answers_429_as_discord_does(
    answered: tuple[FakeDiscord, InteractionHandle],
) -> None:
    fake, handle = answered
    limit = fake.limit_route("PATCH", r"^/webhooks/", limit=2, per=1.0)
    url = f"{fake.api_base}/webhooks/{fake.application_id}/{handle.token}/messages/@original"
    answers = []
    async with aiohttp.ClientSession() as session:
        for text in ("a", "b", "c"):
            async with session.patch(url, json={"content": text}) as response:
                answers.append((response.status, dict(response.headers), await response.json()))
        await asyncio.sleep(float(answers[-1][1]["X-RateLimit-Reset-After"]) + 0.05)
        async with session.patch(url, json={"content": "d"}) as response:
            after_reset = response.status
    (s1, h1, _), (s2, h2, _), (s3, h3, body) = answers
    assert (s1, s2, s3) == (200, 200, 429)
    assert [h["X-RateLimit-Remaining"] for h in (h1, h2, h3)] == ["1", "0", "0"]
    assert h1["X-RateLimit-Limit"] == "2" and h1["X-RateLimit-Bucket"] == h3["X-RateLimit-Bucket"]
    validator = schema_validator("discord", "RatelimitedResponse")
    assert validator is not None
    assert validator.errors(body) == []
    assert body["global"] is False and 0 < body["retry_after"] <= 1.0
    assert h3["Via"] and int(h3["Retry-After"]) >= 1
    assert 0 < float(h3["X-RateLimit-Reset-After"]) <= 1.0
    assert after_reset == 200 and limit.refused == 1
    assert handle.original is not None and handle.original.content == "d"


async def test_discord_py_waits_for_the_bucket_instead_of_hitting_the_limit(
    answered: tuple[FakeDiscord, InteractionHandle],
) -> None:
    """The headers are right: discord.py reads them and waits for the reset, so edits come
    slower and none is refused."""
    fake, handle = answered
    limit = fake.limit_route("PATCH", r"^/webhooks/", limit=2, per=0.5)
    async with aiohttp.ClientSession() as session:
        hook = webhook(fake, handle, session)
        started = time.monotonic()
        for step in range(5):
            await hook.edit_message("@original", content=f"{step}")
        took = time.monotonic() - started
    assert limit.refused == 0
    assert took >= 0.9  # two windows waited out
    assert handle.original is not None and handle.original.content == "4"
