"""Vary (Subtle)/(Strong) on a one-image result, per backend, end to end: GPT image models edit
with input_fidelity high/low, dall-e-2 varies natively (Strong) or repaints a scattered quarter
(Subtle), dall-e-3 refuses, AUTOMATIC1111 runs img2img at the two strengths; and Zoom Out on
AUTOMATIC1111 inpaints the border."""

from __future__ import annotations

import base64
import dataclasses
import io
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.config import ProviderSettings, Settings
from bot.generation import STRONG_INSTRUCTION, SUBTLE_INSTRUCTION
from bot.studio import STRONG_STRENGTH, SUBTLE_STRENGTH
from bot.testing.automatic1111 import FakeAutomatic1111
from bot.testing.discord import FakeDiscord, StoredMessage
from bot.testing.harness import (
    Harness,
    a1111_backend,
    field_value,
    job_id_of,
    make_settings,
    new_result,
    run_bot,
    seen_ids,
)
from bot.testing.images import colour_of
from bot.testing.openai_api import FakeImagesAPI

PROMPT = "a lighthouse at dusk"


async def imagine(h: Harness, size: str = "1024x1024", count: bool = True) -> StoredMessage:
    """One image (dall-e-3's /imagine has no count: it makes one)."""
    before = seen_ids(h.fake)
    options: dict[str, Any] = {"prompt": PROMPT, "size": size}
    if count:
        options["count"] = 1
    await h.fake.slash("imagine", options)
    return await new_result(h, before)


async def act(h: Harness, result: StoredMessage, action: str) -> StoredMessage:
    before = seen_ids(h.fake)
    click = await h.fake.click(result, f"ib:act:{action}:{job_id_of(result)}:0", user=h.fake.user)
    assert (await click.response()).ephemeral
    return await new_result(h, before)


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.fixture
def bot_on(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> Callable[[str], Any]:
    def start(model: str) -> Any:
        return run_bot(fake_discord, fake_images_api, settings_factory(model=model))

    return start


@pytest.mark.parametrize(
    ("action", "fidelity", "instruction"),
    [("vary_subtle", "high", SUBTLE_INSTRUCTION), ("vary_strong", "low", STRONG_INSTRUCTION)],
)
async def test_gpt_image_variations_edit_the_whole_image_at_high_or_low_fidelity(
    bot_on: Callable[[str], Any], action: str, fidelity: str, instruction: str
) -> None:
    async with bot_on("gpt-image-1") as h:
        result = await imagine(h)
        varied = await act(h, result, action)
    request = h.api.requests[-1]
    assert request.path == "/v1/images/edits" and request.file("mask") is None
    assert request.body["input_fidelity"] == fidelity and request.body["n"] == "1"
    assert request.body["prompt"].startswith(instruction) and PROMPT in request.body["prompt"]
    image = request.file("image")
    assert image is not None and decoded(image.data).size == (1024, 1024)
    assert colour_of(image.data) == colour_of(result.files["image_1.png"])
    assert len(varied.attachments) == 1 and field_value(varied, "Cost") != "$0.00"
    title = "Vary (Subtle)" if action == "vary_subtle" else "Vary (Strong)"
    assert varied.embeds[0]["title"] == f"{title} of image 1"


async def test_gpt_image_1_mini_varies_without_input_fidelity(
    bot_on: Callable[[str], Any],
) -> None:
    async with bot_on("gpt-image-1-mini") as h:
        await act(h, await imagine(h), "vary_subtle")
    request = h.api.requests[-1]
    assert request.path == "/v1/images/edits" and "input_fidelity" not in request.body
    assert request.body["prompt"].startswith(SUBTLE_INSTRUCTION)


async def test_dall_e_2_strong_is_a_native_variation(harness: Harness) -> None:
    result = await imagine(harness, "256x256")
    varied = await act(harness, result, "vary_strong")
    request = harness.api.requests[-1]
    assert request.path == "/v1/images/variations"
    assert request.body["n"] == "1" and request.body["size"] == "256x256"
    assert field_value(varied, "Cost") == "$0.016"


async def test_dall_e_2_subtle_repaints_a_scattered_quarter_of_the_picture(
    harness: Harness,
) -> None:
    result = await imagine(harness, "256x256")
    await act(harness, result, "vary_subtle")
    request = harness.api.requests[-1]
    assert request.path == "/v1/images/edits" and request.body["size"] == "256x256"
    assert request.body["prompt"].startswith(SUBTLE_INSTRUCTION)
    assert "input_fidelity" not in request.body  # dall-e-2 has none
    mask_file, image_file = request.file("mask"), request.file("image")
    assert mask_file is not None and image_file is not None
    mask = decoded(mask_file.data).convert("RGBA").getchannel("A")
    assert mask.size == (256, 256)
    assert mask.histogram()[0] == 256 * 256 // 4  # one cell in four is repainted
    assert mask.getpixel((16, 16)) == 0 and mask.getpixel((48, 16)) == 255
    # The picture itself goes as it is (opaque): only the mask says what changes.
    picture = decoded(image_file.data)
    assert picture.mode == "RGBA" and picture.getchannel("A").getextrema() == (255, 255)


@pytest.mark.parametrize("action", ["vary_subtle", "vary_strong", "zoom_2", "pan_left"])
async def test_dall_e_3_refuses_every_action_clearly_and_sends_nothing(
    bot_on: Callable[[str], Any], action: str
) -> None:
    async with bot_on("dall-e-3") as h:
        result = await imagine(h, count=False)
        calls = len(h.api.requests)
        click = await h.fake.click(result, f"ib:act:{action}:{job_id_of(result)}:0")
        answer = await click.wait_message()
        await h.idle()
    assert answer.ephemeral
    assert answer.content == (
        "This result's backend can't do that: dall-e-3 only makes new images from a prompt "
        "(no edits or variations)"
    )
    assert len(h.api.requests) == calls


@pytest.fixture
async def a1111() -> AsyncIterator[FakeAutomatic1111]:
    async with FakeAutomatic1111(step_delay=0.001) as server:
        yield server


@pytest.fixture
async def sd(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
    a1111: FakeAutomatic1111,
) -> AsyncIterator[Harness]:
    settings = settings_factory(provider=ProviderSettings(**a1111_backend(a1111)))
    async with run_bot(fake_discord, fake_images_api, settings, a1111=a1111) as running:
        yield running
    assert fake_discord.spec_violations == []
    assert fake_images_api.requests == []


def img2img_bodies(a1111: FakeAutomatic1111) -> list[dict[str, Any]]:
    return [body for path, body in a1111.requests if path.endswith("/img2img")]


async def test_a1111_subtle_and_strong_are_img2img_at_their_strengths(
    sd: Harness, a1111: FakeAutomatic1111
) -> None:
    result = await imagine(sd, "512x512")
    await act(sd, result, "vary_subtle")
    await act(sd, result, "vary_strong")
    subtle, strong = img2img_bodies(a1111)
    assert subtle["denoising_strength"] == SUBTLE_STRENGTH == 0.35
    assert strong["denoising_strength"] == STRONG_STRENGTH == 0.8
    for body in (subtle, strong):
        assert body["prompt"] == PROMPT and "mask" not in body and body["seed"] == -1
        assert (body["width"], body["height"]) == (512, 512)


async def test_a1111_zoom_out_inpaints_the_border_white_on_black(
    sd: Harness, a1111: FakeAutomatic1111
) -> None:
    result = await imagine(sd, "512x512")
    await act(sd, result, "zoom_2")
    (body,) = img2img_bodies(a1111)
    assert body["prompt"] == PROMPT
    mask = decoded(base64.b64decode(body["mask"])).convert("L")
    assert mask.size == (512, 512)
    assert mask.getpixel((5, 5)) == 255 and mask.getpixel((256, 256)) == 0
    assert mask.point(lambda v: 0 if v else 255).getbbox() == (128, 128, 384, 384)
    picture = decoded(base64.b64decode(body["init_images"][0])).convert("RGB")
    assert picture.getpixel((256, 256)) == colour_of(result.files["image_1.png"])


async def test_a1111_pan_right_widens_the_canvas_and_masks_the_right_band(
    sd: Harness, a1111: FakeAutomatic1111
) -> None:
    await act(sd, await imagine(sd, "512x512"), "pan_right")
    (body,) = img2img_bodies(a1111)
    assert (body["width"], body["height"]) == (768, 512)
    mask = decoded(base64.b64decode(body["mask"])).convert("L")
    assert mask.size == (768, 512) and mask.getbbox() == (512, 0, 768, 512)


async def test_an_action_on_a_result_whose_backend_this_server_lost_is_built_for_its_new_one(
    tmp_path: Path,
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    a1111: FakeAutomatic1111,
) -> None:
    gpu = ProviderSettings(**a1111_backend(a1111))
    settings = make_settings(tmp_path, fake_discord, fake_images_api, backends={"gpu": gpu})
    async with run_bot(fake_discord, fake_images_api, settings, a1111=a1111) as h:
        chosen = await h.fake.slash(
            "settings", {"name": "gpu"}, subcommand="server-backend", user=h.fake.admin
        )
        await chosen.wait_message()
        result = await imagine(h, "512x512")

    # The GPU server is kept for another server only: this one is back on dall-e-2.
    elsewhere = dataclasses.replace(gpu, enabled_guilds=(1,))
    async with run_bot(
        fake_discord, fake_images_api, dataclasses.replace(settings, backends={"gpu": elsewhere})
    ) as h:
        await act(h, result, "vary_subtle")

    # dall-e-2's Subtle (an edit of a scattered quarter), not its plain variation.
    request = fake_images_api.requests[-1]
    assert request.path == "/v1/images/edits" and request.body["model"] == "dall-e-2"
    assert request.body["prompt"].startswith(SUBTLE_INSTRUCTION) and "strength" not in request.body
    assert img2img_bodies(a1111) == []
