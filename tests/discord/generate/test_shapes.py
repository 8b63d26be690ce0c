"""Landscape and portrait uploads keep their shape where the model takes it (issue 11, item 6).

dall-e-2 takes only squares, so uploads used to be squared for every model; GPT image models
take 1536x1024 and 1024x1536 too, and a letterboxed landscape photo came back with black bars.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from bot.config import Settings
from bot.testing.discord import FakeDiscord
from bot.testing.harness import ROOMY_QUOTAS, Harness, api_calls, run_bot
from bot.testing.images import decode_image, png_bytes
from bot.testing.openai_api import FakeImagesAPI

COLOUR = (200, 60, 40)
LANDSCAPE = png_bytes(1800, 1200, COLOUR, hole=(800, 500, 1000, 700))


@pytest.fixture
async def gpt_image_1(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> AsyncIterator[Harness]:
    async with run_bot(
        fake_discord, fake_images_api, settings_factory(model="gpt-image-1")
    ) as running:
        yield running
    assert fake_discord.spec_violations == []
    assert fake_images_api.spec_violations == []


def sent(call: Any, name: str = "image") -> Any:
    """The decoded ``name`` file of a recorded request."""
    uploaded = call.file(name)
    assert uploaded is not None
    return decode_image(uploaded.data).convert("RGBA")


def corners(size: tuple[int, int]) -> list[tuple[int, int]]:
    width, height = size
    return [(0, 0), (width - 1, 0), (0, height - 1), (width - 1, height - 1)]


async def test_an_edit_of_a_landscape_photo_is_sent_and_answered_landscape(
    gpt_image_1: Harness,
) -> None:
    upload = gpt_image_1.fake.add_attachment(LANDSCAPE, "street.png")
    await gpt_image_1.fake.slash("edit", {"image": upload, "prompt": "a red door"})
    result = await gpt_image_1.result()

    (call,) = api_calls(gpt_image_1.api, "edits")
    assert call.body["size"] == "1536x1024"
    image = sent(call)
    assert image.size == (1536, 1024)
    for corner in corners(image.size):  # the photo reaches every edge: no letterbox bars
        assert image.getpixel(corner) == (*COLOUR, 255)
    assert image.getpixel((768, 512))[3] == 0  # the hole, scaled with the picture, is the area
    assert sent(call, "mask").size == (1536, 1024)
    (attachment,) = result.attachments
    assert decode_image(attachment.data).size == (1536, 1024)


async def test_variations_of_a_portrait_photo_are_portrait(gpt_image_1: Harness) -> None:
    upload = gpt_image_1.fake.add_attachment(png_bytes(900, 1350, COLOUR), "tower.png")
    await gpt_image_1.fake.slash("vary", {"image": upload})
    await gpt_image_1.result()

    (call,) = api_calls(gpt_image_1.api, "edits")  # GPT image models vary through edits
    assert call.body["size"] == "1024x1536"
    image = sent(call)
    assert image.size == (1024, 1536)
    assert all(image.getpixel(corner) == (*COLOUR, 255) for corner in corners(image.size))


async def test_a_size_the_member_chose_wins_over_the_photo_shape(gpt_image_1: Harness) -> None:
    upload = gpt_image_1.fake.add_attachment(LANDSCAPE, "street.png")
    options = {"image": upload, "prompt": "a red door", "size": "1024x1536"}
    await gpt_image_1.fake.slash("edit", options)
    await gpt_image_1.result()

    (call,) = api_calls(gpt_image_1.api, "edits")
    assert call.body["size"] == "1024x1536"
    assert sent(call).size == (1024, 1536)  # fitted to the chosen shape


async def test_dall_e_2_still_gets_a_square(harness: Harness) -> None:
    upload = harness.fake.add_attachment(png_bytes(1800, 1200, COLOUR), "street.png")
    await harness.fake.slash("vary", {"image": upload})
    await harness.result()
    (call,) = api_calls(harness.api, "variations")
    assert sent(call).size == (1024, 1024)
    assert call.body.get("size", "1024x1024") == "1024x1024"


async def test_an_operator_who_allows_only_squares_gets_squares(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    quotas = dataclasses.replace(ROOMY_QUOTAS, allowed_sizes=("1024x1024",))
    settings = settings_factory(model="gpt-image-1", quotas=quotas)
    async with run_bot(fake_discord, fake_images_api, settings) as harness:
        upload = fake_discord.add_attachment(LANDSCAPE, "street.png")
        await fake_discord.slash("edit", {"image": upload, "prompt": "a red door"})
        await harness.result()
    (call,) = api_calls(fake_images_api, "edits")
    assert call.body["size"] == "1024x1024"  # not the dearer 1536x1024 the photo's shape asks
    assert sent(call).size == (1024, 1024)


async def test_a_landscape_edit_reserves_the_large_price_and_a_tight_budget_refuses_it(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    """No size chosen: the photo's shape makes a 1536x1024 image ($0.016 at low quality, plus
    $0.004 for its streamed preview), so the reservation must not be the square's $0.011 (+
    $0.004), or a budget of $0.015 is overspent."""
    quotas = dataclasses.replace(ROOMY_QUOTAS, spend_per_month_usd=0.015, default_quality="low")
    settings = settings_factory(model="gpt-image-1", quotas=quotas)
    async with run_bot(fake_discord, fake_images_api, settings) as harness:
        upload = fake_discord.add_attachment(LANDSCAPE, "street.png")
        edit = await fake_discord.slash("edit", {"image": upload, "prompt": "a red door"})
        message = await edit.wait_message()
        await harness.idle()
    assert message.ephemeral and "image budget of $0.015" in message.content
    assert "may cost up to $0.02" in message.content
    assert api_calls(fake_images_api, "edits") == []  # nothing was bought over the budget
