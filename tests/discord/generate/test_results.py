"""The shape of a posted result under every Discord limit, and prompts that try to ping people.

The fake Discord refuses (and records) any body over a limit: 2000 content, 10 embeds and
attachments, title 256, description 4096, 6000 embed characters per message, uploads over the
interaction's ``attachment_size_limit``. Each test asserts that nothing was refused, that every
image still arrived, and what the member sees.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image

from bot.config import Settings
from bot.testing import openai_rules
from bot.testing.discord import FakeDiscord, StoredMessage
from bot.testing.harness import Harness, api_calls, fields, run_bot
from bot.testing.images import decode_image
from bot.testing.openai_api import FakeImagesAPI

ZWSP = "\u200b"


def embed_text(message: StoredMessage) -> int:
    """Discord's count for the 6000 limit: titles, descriptions, fields, footers, authors."""
    total = 0
    for embed in message.embeds:
        total += len(embed.get("title") or "") + len(embed.get("description") or "")
        total += len((embed.get("footer") or {}).get("text") or "")
        total += len((embed.get("author") or {}).get("name") or "")
        for field in embed.get("fields") or []:
            total += len(field["name"]) + len(field["value"])
    return total


def within_limits(message: StoredMessage) -> None:
    assert len(message.content) <= 2000
    assert len(message.embeds) <= 10 and len(message.attachments) <= 10
    for embed in message.embeds:
        assert len(embed.get("title") or "") <= 256
        assert len(embed.get("description") or "") <= 4096
    assert embed_text(message) <= 6000


def results(fake: FakeDiscord, channel: Any = None) -> list[StoredMessage]:
    sources = ("channel", "followup")
    found = fake.messages(channel, sources=sources)
    return [m for m in found if m.attachments and not m.ephemeral]


# --- mentions ---------------------------------------------------------------------------------


async def test_a_prompt_full_of_mentions_pings_nobody_but_the_requester(harness: Harness) -> None:
    fake = harness.fake
    role = fake.add_role(fake.guild, "moderators")
    prompt = f"@everyone @here <@&{role.id}> <@{fake.admin.id}> a *loud* cat"
    handle = await fake.slash("imagine", {"prompt": prompt}, user=fake.user)
    result = await harness.result()
    await harness.idle()

    assert result.pinged_ids == [fake.user.id] and not result.mention_everyone
    assert result.allowed_mentions == {"parse": [], "users": [fake.user.id]}
    description = result.embeds[0]["description"]
    assert "@everyone" not in description and "@here" not in description
    assert f"<@{fake.admin.id}>" not in description and f"<@&{role.id}>" not in description
    assert description == (
        f"@{ZWSP}everyone @{ZWSP}here <@{ZWSP}&{role.id}> <@{ZWSP}{fake.admin.id}> a \\*loud\\* cat"
    )
    assert (api_calls(harness.api, "generations")[0].json or {})["prompt"] == prompt  # unchanged
    status = [m for m in handle.messages if m.ephemeral]
    assert status  # the private status messages ping nobody either
    for message in status:
        assert message.pinged_ids == [] and not message.mention_everyone
    assert fake.admin.id not in result.pinged_ids


async def test_the_revised_prompt_is_escaped_too(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    fake = fake_discord
    async with run_bot(fake, fake_images_api, settings_factory(model="dall-e-3")) as harness:
        await fake.slash("imagine", {"prompt": f"@here <@{fake.admin.id}> a fox"})
        result = await harness.result()
    revised = fields(result)["Revised prompt"]
    assert (
        revised == f"A detailed, vivid illustration of: @{ZWSP}here <@{ZWSP}{fake.admin.id}> a fox"
    )
    assert result.pinged_ids == [fake.user.id] and not result.mention_everyone
    assert fake.spec_violations == []


# --- text limits -------------------------------------------------------------------------------


async def test_a_4000_character_prompt_fits_the_embed_limits(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    """Markdown escaping doubles "*" and "_": the prompt shown must be trimmed to fit."""
    fake = fake_discord
    prompt = ("*bold* _it_ " * 400)[:4000]
    async with run_bot(fake, fake_images_api, settings_factory(model="gpt-image-2")) as harness:
        await fake.slash("imagine", {"prompt": prompt, "count": 10, "quality": "low"})
        result = await harness.result()
        await harness.idle()
    assert (fake_images_api.requests[0].json or {})["prompt"] == prompt
    within_limits(result)
    assert len(result.attachments) == 10 and len(result.embeds) == 10
    description = result.embeds[0]["description"]
    assert description.endswith("…") and description.startswith("\\*bold\\* \\_it\\_")
    assert 3000 < len(description) <= 4096
    assert fields(result)["Quality"] == "low"
    assert fake.spec_violations == [] and fake_images_api.spec_violations == []


async def test_a_long_prompt_and_its_revision_share_the_6000_characters(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    fake = fake_discord
    prompt = "a very detailed scene " * 181  # 3982 characters, within dall-e-3's 4000
    async with run_bot(fake, fake_images_api, settings_factory(model="dall-e-3")) as harness:
        await fake.slash("imagine", {"prompt": prompt.strip()})
        result = await harness.result()
    within_limits(result)
    revised = fields(result)["Revised prompt"]
    assert len(revised) <= 1024 and revised.endswith("…")
    assert result.embeds[0]["description"].startswith("a very detailed scene")
    assert fake.spec_violations == []


# --- counts and upload sizes -------------------------------------------------------------------


async def test_ten_images_fit_one_message(harness: Harness) -> None:
    fake = harness.fake
    await fake.slash("imagine", {"prompt": "ten cats", "count": 10, "size": "256x256"})
    result = await harness.result()
    await harness.idle()
    within_limits(result)
    assert [a.filename for a in result.attachments] == [f"image_{i}.png" for i in range(1, 11)]
    assert all(decode_image(a.data).size == (256, 256) for a in result.attachments)
    assert len(results(fake)) == 1
    rows = result.components
    assert len(rows) <= 5 and all(len(row["components"]) <= 5 for row in rows)
    # ten Vary and ten Upscale buttons, Redo, Remix, Params, Delete
    assert len(result.custom_ids) == 24


async def small_upload_guild(fake: FakeDiscord, limit: int) -> tuple[Any, Any]:
    guild = fake.add_guild("Small Server", upload_limit=limit)
    channel = fake.add_channel(guild, "art")
    member = fake.add_member(guild, "carol")
    await fake.flush()
    return channel, member


async def test_results_over_the_upload_limit_are_re_encoded(harness: Harness) -> None:
    fake = harness.fake
    limit = 50_000  # four 1024x1024 PNGs from the fake image API are about 82 KB
    channel, member = await small_upload_guild(fake, limit)
    await fake.slash("imagine", {"prompt": "four cats", "count": 4}, channel=channel, user=member)
    result = await harness.result()
    await harness.idle()
    (only,) = results(fake, channel)
    assert only is result
    assert sum(a.size for a in result.attachments) <= limit
    assert [a.filename for a in result.attachments] == [f"image_{i}.webp" for i in range(1, 5)]
    for attachment, embed in zip(result.attachments, result.embeds, strict=True):
        image = decode_image(attachment.data)
        assert image.format == "WEBP" and image.size == (1024, 1024)
        assert embed["image"]["url"] == attachment.url
    assert result.pinged_ids == [member.id]


async def test_results_too_big_for_one_message_are_split(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fake image API is made to answer with noise, which no encoder can shrink much."""

    def noise(width: int, height: int, colour: Any, fmt: str) -> bytes:
        image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
        buffer = io.BytesIO()
        image.save(buffer, fmt.upper(), compress_level=1)
        return buffer.getvalue()

    monkeypatch.setattr(openai_rules, "make_image", noise)
    fake = harness.fake
    limit = 100_000  # one 256x256 noise image is ~200 KB as PNG and ~36-55 KB as WebP
    channel, member = await small_upload_guild(fake, limit)
    await fake.slash(
        "imagine",
        {"prompt": "static", "count": 4, "size": "256x256"},
        channel=channel,
        user=member,
    )
    await harness.result()
    await harness.idle()
    parts = sorted(results(fake, channel), key=lambda m: m.id)
    assert len(parts) >= 2
    names = [a.filename for part in parts for a in part.attachments]
    assert names == [f"image_{i}.webp" for i in range(1, 5)]  # all four, in order
    for part in parts:
        within_limits(part)
        assert sum(a.size for a in part.attachments) <= limit
        assert len(part.embeds) == len(part.attachments)
        for attachment, embed in zip(part.attachments, part.embeds, strict=True):
            assert embed["image"]["url"] == attachment.url
            assert decode_image(attachment.data).size == (256, 256)
    first, rest = parts[0], parts[1:]
    assert fields(first)["Model"] == "dall-e-2"  # the details once, on the first message
    assert all("fields" not in embed for part in rest for embed in part.embeds)
    assert first.pinged_ids == [member.id]
    assert all(part.pinged_ids == [] for part in rest)  # pinged once, not once per part
