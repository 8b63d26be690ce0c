"""Each command end to end: what Discord is told at sync, what a member sees, what the API gets.

The bot runs as the operator runs it (``open_bot``) against the fake Discord and the fake Images
API; every REST body is checked against Discord's official spec by the fake (the ``harness``
fixture and :func:`no_violations` assert that nothing was refused or out of spec).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.config import Settings
from bot.providers.capabilities import DEFAULT_VARY_PROMPT
from bot.testing.discord import FakeDiscord, StoredMessage
from bot.testing.harness import Harness, api_calls, fields, run_bot, synced
from bot.testing.images import bw_mask_bytes, decode_image, png_bytes
from bot.testing.openai_api import FakeImagesAPI

TRANSLATED = {"ko", "ja", "zh-CN", "zh-TW"}


def no_violations(fake: FakeDiscord, api: FakeImagesAPI) -> None:
    assert fake.spec_violations == []
    assert api.spec_violations == []


def options(command: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {o["name"]: o for o in command.get("options") or []}


def choice_values(option: dict[str, Any]) -> list[str]:
    return [c["value"] for c in option.get("choices") or []]


def assert_localized(command: dict[str, Any]) -> None:
    """Names and descriptions of the command, its options and their choices, in 4 languages."""
    assert set(command.get("name_localizations") or {}) == TRANSLATED, command["name"]
    if command.get("type", 1) == 1:
        assert set(command.get("description_localizations") or {}) == TRANSLATED
    for option in command.get("options") or []:
        where = f"{command['name']} {option['name']}"
        assert set(option.get("name_localizations") or {}) == TRANSLATED, where
        assert set(option.get("description_localizations") or {}) == TRANSLATED, where
        for choice in option.get("choices") or []:
            if choice["name"] != choice["value"]:  # labels, not sizes like "256x256"
                assert set(choice.get("name_localizations") or {}) == TRANSLATED, where


def request_body(fake: FakeDiscord, message: StoredMessage) -> dict[str, Any]:
    """The JSON the bot sent to create ``message`` (embeds before the fake resolved them)."""
    for record in fake.requests:
        body = record.json
        if record.method == "POST" and isinstance(body, dict) and record.status in (200, 204):
            names = [a.filename for a in message.attachments]
            sent = [a.get("filename") for a in body.get("attachments") or []]
            if names and sent == names and body.get("content") == message.content:
                return body
    raise AssertionError(f"no request created message {message.id}")


def assert_result_shape(
    fake: FakeDiscord, result: StoredMessage, n: int, *, requester: int
) -> list[Any]:
    """n files, n embeds showing them through attachment://, pinging only the requester."""
    assert not result.ephemeral
    assert len(result.attachments) == n and len(result.embeds) == n
    body = request_body(fake, result)
    for index, (embed, attachment) in enumerate(
        zip(body["embeds"], result.attachments, strict=True)
    ):
        assert attachment.filename.startswith(f"image_{index + 1}.")
        assert embed["image"]["url"] == f"attachment://{attachment.filename}"
    for embed, attachment in zip(result.embeds, result.attachments, strict=True):
        assert embed["image"]["url"] == attachment.url  # Discord-hosted, never a provider URL
    assert result.pinged_ids == [requester]
    return [decode_image(a.data) for a in result.attachments]


async def first_response_is_private_defer(handle: Any) -> None:
    response = await handle.response()
    assert response.type == 5 and response.ephemeral
    assert handle.responded_within is not None and handle.responded_within < 3


# --- what Discord is told ------------------------------------------------------------------------


async def test_dall_e_2_offers_every_command_with_its_choices(harness: Harness) -> None:
    fake = harness.fake
    assert sorted((c["name"], c.get("type", 1)) for c in fake.commands) == [
        ("Vary image", 3),
        ("blend", 1),
        ("edit", 1),
        ("history", 1),
        ("imagine", 1),
        ("moderation", 1),
        ("quota", 1),
        ("settings", 1),
        ("show", 1),
        ("usage", 1),
        ("vary", 1),
    ]
    imagine = options(synced(fake, "imagine"))
    assert list(imagine) == [
        "prompt",
        "count",
        "size",
        "private",
    ]  # one quality, no style: no options
    assert imagine["prompt"]["required"] is True
    assert (imagine["count"]["min_value"], imagine["count"]["max_value"]) == (1, 10)
    assert choice_values(imagine["size"]) == ["256x256", "512x512", "1024x1024"]
    edit = options(synced(fake, "edit"))
    assert list(edit) == ["image", "prompt", "mask", "fit", "count", "size", "private"]
    assert edit["image"]["type"] == 11 and edit["image"]["required"] is True
    assert edit["mask"]["type"] == 11 and not edit["mask"].get("required")
    assert choice_values(edit["fit"]) == ["crop", "pad"]
    vary = options(synced(fake, "vary"))
    assert list(vary) == ["image", "fit", "count", "size", "private"]
    for command in fake.commands:
        assert command["contexts"] == [0]  # servers only
        assert_localized(command)


async def test_dall_e_3_offers_only_imagine_with_quality_and_style(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(model="dall-e-3")
    async with run_bot(fake_discord, fake_images_api, settings) as harness:
        names = sorted((c["name"], c.get("type", 1)) for c in fake_discord.commands)
        assert names == [
            ("history", 1),
            ("imagine", 1),
            ("moderation", 1),
            ("quota", 1),
            ("settings", 1),
            ("show", 1),
            ("usage", 1),
        ]
        imagine = synced(fake_discord, "imagine")
        opts = options(imagine)
        assert list(opts) == [
            "prompt",
            "size",
            "quality",
            "style",
            "private",
        ]  # n is always 1: no count
        assert choice_values(opts["size"]) == ["1024x1024", "1792x1024", "1024x1792"]
        assert choice_values(opts["quality"]) == ["standard", "hd"]
        assert choice_values(opts["style"]) == ["vivid", "natural"]
        assert_localized(imagine)
        natural = opts["style"]["choices"][1]
        japanese = harness.bot.catalog.text("choice.style.natural", "ja")
        assert natural["name"] == "Natural" and natural["name_localizations"]["ja"] == japanese
    no_violations(fake_discord, fake_images_api)


async def test_gpt_image_2_offers_qualities_edits_and_variations(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    async with run_bot(fake_discord, fake_images_api, settings_factory(model="gpt-image-2")):
        names = sorted((c["name"], c.get("type", 1)) for c in fake_discord.commands)
        assert names == [
            ("Vary image", 3),
            ("blend", 1),
            ("edit", 1),
            ("history", 1),
            ("imagine", 1),
            ("moderation", 1),
            ("quota", 1),
            ("settings", 1),
            ("show", 1),
            ("usage", 1),
            ("vary", 1),
        ]
        imagine = options(synced(fake_discord, "imagine"))
        assert list(imagine) == ["prompt", "count", "size", "quality", "private"]
        assert choice_values(imagine["quality"]) == ["low", "medium", "high", "auto"]
        assert "auto" in choice_values(imagine["size"])
        edit = options(synced(fake_discord, "edit"))
        assert "quality" in edit and "style" not in edit
        blend = synced(fake_discord, "blend")
        pictures = [f"image{index}" for index in range(1, 6)]
        assert list(options(blend)) == [*pictures, "prompt", "count", "size", "quality", "private"]
        for name in pictures:
            assert options(blend)[name]["type"] == 11  # attachments
            assert bool(options(blend)[name].get("required")) is (name in ("image1", "image2"))
        assert not options(blend)["prompt"].get("required")
        assert_localized(blend)
        vary = options(synced(fake_discord, "vary"))
        assert "quality" not in vary and "prompt" not in vary
        for command in fake_discord.commands:
            assert_localized(command)
    no_violations(fake_discord, fake_images_api)


# --- /imagine -------------------------------------------------------------------------------------


async def test_imagine_defers_privately_then_posts_the_images(harness: Harness) -> None:
    fake, api = harness.fake, harness.api
    handle = await fake.slash(
        "imagine", {"prompt": "a white siamese cat", "count": 3, "size": "256x256"}
    )
    await first_response_is_private_defer(handle)
    result = await harness.result()
    await harness.idle()

    images = assert_result_shape(fake, result, 3, requester=fake.user.id)
    assert {image.size for image in images} == {(256, 256)}
    assert len({a.data for a in result.attachments}) == 3  # three different images
    (call,) = api_calls(api, "generations")
    assert call.json["prompt"] == "a white siamese cat"
    assert (call.json["n"], call.json["size"], call.json["model"]) == (3, "256x256", "dall-e-2")
    assert call.json["response_format"] == "b64_json"  # bytes, never an expiring URL

    embed = result.embeds[0]
    assert embed["title"] == "Prompt" and embed["description"] == "a white siamese cat"
    details = fields(result)
    assert details["Requested by"] == f"<@{fake.user.id}>"
    assert details["Model"] == "dall-e-2" and details["Size"] == "256x256"
    assert details["Time"].endswith(" s") and details["Cost"] == "$0.048"  # 3 x $0.016
    assert result.source == "followup" and result.interaction_id == handle.id
    # The private status message stays private and is not the result.
    status = handle.original
    assert status is not None and status.ephemeral and status is not result
    assert not status.attachments


async def test_imagine_default_size_and_one_image(harness: Harness) -> None:
    fake, api = harness.fake, harness.api
    handle = await fake.slash("imagine", {"prompt": "a lighthouse at dusk"})
    await first_response_is_private_defer(handle)
    result = await harness.result()
    (image,) = assert_result_shape(fake, result, 1, requester=fake.user.id)
    assert image.size == (1024, 1024)
    (call,) = api_calls(api, "generations")
    assert call.json.get("n", 1) == 1 and call.json.get("size") in (None, "1024x1024")


async def test_dall_e_3_shows_its_quality_style_and_revised_prompt(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    async with run_bot(
        fake_discord, fake_images_api, settings_factory(model="dall-e-3")
    ) as harness:
        handle = await fake_discord.slash(
            "imagine", {"prompt": "a fox", "quality": "hd", "style": "natural"}
        )
        await first_response_is_private_defer(handle)
        result = await harness.result()
    assert_result_shape(fake_discord, result, 1, requester=fake_discord.user.id)
    (call,) = api_calls(fake_images_api, "generations")
    assert (call.json["quality"], call.json["style"]) == ("hd", "natural")
    details = fields(result)
    assert details["Quality"] == "hd" and details["Model"] == "dall-e-3"
    assert details["Revised prompt"] == "A detailed, vivid illustration of: a fox"
    assert result.embeds[0]["description"] == "a fox"
    no_violations(fake_discord, fake_images_api)


# --- /edit ----------------------------------------------------------------------------------------


async def test_edit_with_a_black_and_white_mask(harness: Harness) -> None:
    fake, api = harness.fake, harness.api
    picture = fake.add_attachment(png_bytes(256, 256), "room.png")
    mask = fake.add_attachment(bw_mask_bytes(256, 256, (0, 0, 127, 255)), "mask.png")
    handle = await fake.slash(
        "edit",
        {"image": picture, "mask": mask, "prompt": "a window on the left", "size": "256x256"},
    )
    await first_response_is_private_defer(handle)
    result = await harness.result()

    (image,) = assert_result_shape(fake, result, 1, requester=fake.user.id)
    assert image.size == (256, 256)
    (call,) = api_calls(api, "edits")
    assert call.form["prompt"] == "a window on the left" and call.form["size"] == "256x256"
    sent_image, sent_mask = call.file("image"), call.file("mask")
    assert sent_image is not None and sent_mask is not None
    picture_sent, mask_sent = decode_image(sent_image.data), decode_image(sent_mask.data)
    assert picture_sent.size == mask_sent.size == (256, 256)
    alpha = mask_sent.convert("RGBA").getchannel("A")
    # The API's convention: transparent = repaint. White (left half) became transparent.
    assert alpha.getpixel((10, 128)) == 0 and alpha.getpixel((120, 10)) == 0
    assert alpha.getpixel((140, 128)) == 255 and alpha.getpixel((250, 250)) == 255
    assert result.embeds[0]["title"] == "Edit"
    assert result.embeds[0]["description"] == "a window on the left"


async def test_edit_without_mask_uses_the_transparent_hole(harness: Harness) -> None:
    fake, api = harness.fake, harness.api
    upload = png_bytes(256, 256, hole=(64, 64, 191, 191))
    handle = await fake.slash(
        "edit", {"image": upload, "prompt": "a red ball in the middle", "size": "256x256"}
    )
    await first_response_is_private_defer(handle)
    result = await harness.result()
    assert_result_shape(fake, result, 1, requester=fake.user.id)
    (call,) = api_calls(api, "edits")
    sent_mask = call.file("mask")
    assert sent_mask is not None
    alpha = decode_image(sent_mask.data).convert("RGBA").getchannel("A")
    assert alpha.getpixel((128, 128)) == 0  # the hole is repainted
    assert alpha.getpixel((10, 10)) == 255  # the rest is kept


async def test_edit_on_gpt_image_2_keeps_the_mask_aligned_after_padding(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    fake, api = fake_discord, fake_images_api
    upload = png_bytes(128, 64, hole=(64, 0, 127, 63))  # the right half is to be repainted
    async with run_bot(fake, api, settings_factory(model="gpt-image-2")) as harness:
        handle = await fake.slash(
            "edit",
            # A square size chosen for a 2:1 picture: it is padded (unchosen, it keeps its shape).
            {"image": upload, "prompt": "a sunset on the right", "fit": "pad", "size": "1024x1024"},
        )
        await first_response_is_private_defer(handle)
        result = await harness.result()
    assert_result_shape(fake, result, 1, requester=fake.user.id)
    (call,) = api_calls(api, "edits")
    sent_image, sent_mask = call.file("image[]") or call.file("image"), call.file("mask")
    assert sent_image is not None and sent_mask is not None
    picture, mask = decode_image(sent_image.data), decode_image(sent_mask.data)
    assert picture.size == mask.size == (1024, 1024)
    alpha = mask.convert("RGBA").getchannel("A")
    # Padded into the middle band (rows 256-767); only the hole's place there is repainted.
    assert alpha.getpixel((800, 512)) == 0
    assert alpha.getpixel((200, 512)) == 255
    assert alpha.getpixel((800, 100)) == 255 and alpha.getpixel((800, 900)) == 255  # padding
    assert picture.convert("RGB").getpixel((200, 512)) == (200, 60, 40)
    no_violations(fake, api)


# --- /vary and "Vary image" -----------------------------------------------------------------------


async def test_vary_uses_native_variations_on_dall_e_2(harness: Harness) -> None:
    fake, api = harness.fake, harness.api
    upload = fake.add_attachment(png_bytes(300, 200), "photo.png")
    handle = await fake.slash("vary", {"image": upload, "count": 2, "size": "256x256"})
    await first_response_is_private_defer(handle)
    result = await harness.result()
    images = assert_result_shape(fake, result, 2, requester=fake.user.id)
    assert {image.size for image in images} == {(256, 256)}
    (call,) = api_calls(api, "variations")
    assert (call.form["n"], call.form["size"]) == ("2", "256x256")
    sent = call.file("image")
    assert sent is not None and decode_image(sent.data).size == (256, 256)  # squared
    assert api_calls(api, "edits") == [] and api_calls(api, "generations") == []
    embed = result.embeds[0]
    assert "description" not in embed  # no prompt to show
    assert embed["title"] == "Variation"


async def test_vary_on_gpt_image_2_goes_through_edits(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    fake, api = fake_discord, fake_images_api
    async with run_bot(fake, api, settings_factory(model="gpt-image-2")) as harness:
        upload = fake.add_attachment(png_bytes(64, 64), "photo.png")
        handle = await fake.slash("vary", {"image": upload, "size": "1024x1024"})
        await first_response_is_private_defer(handle)
        result = await harness.result()
    assert_result_shape(fake, result, 1, requester=fake.user.id)
    assert api_calls(api, "variations") == []
    (call,) = api_calls(api, "edits")
    assert call.form["prompt"] == DEFAULT_VARY_PROMPT and call.form["model"] == "gpt-image-2"
    assert call.file("mask") is None
    assert fields(result)["Model"] == "gpt-image-2"
    no_violations(fake, api)


async def test_vary_image_menu_on_a_members_message(harness: Harness) -> None:
    fake, api = harness.fake, harness.api
    posted = await fake.post_message(
        "look at my cat", user=fake.admin, files={"notes.txt": b"hello", "cat.png": png_bytes()}
    )
    handle = await fake.context_menu("Vary image", posted, user=fake.user)
    await first_response_is_private_defer(handle)
    result = await harness.result()
    assert_result_shape(fake, result, 1, requester=fake.user.id)  # the one who asked
    (call,) = api_calls(api, "variations")
    sent = call.file("image")
    assert sent is not None
    # The image attachment was read (a red square), not the text file.
    assert decode_image(sent.data).convert("RGB").getpixel((5, 5)) == (200, 60, 40)


async def test_vary_image_menu_on_a_message_without_an_image(harness: Harness) -> None:
    fake, api = harness.fake, harness.api
    posted = await fake.post_message("just words", files={"notes.txt": b"hello"})
    handle = await fake.context_menu("Vary image", posted)
    response = await handle.response()
    assert response.type == 4 and response.ephemeral
    assert response.data["content"] == harness.bot.catalog.text("error.no_image_in_message")
    assert api.requests == []
    assert fake.messages(sources=("channel", "followup")) == []
