"""Zoom Out, Pan and Make Square on a one-image result, end to end on the OpenAI fake: the canvas
and mask each click sends, checked pixel by pixel against the result it was clicked on."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import AsyncIterator, Callable

import pytest
from PIL import Image

from bot.config import Settings
from bot.generation import CANVAS_INSTRUCTION
from bot.jobs import store
from bot.testing.discord import FakeDiscord, StoredMessage
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
from bot.testing.openai_api import FakeImagesAPI, RecordedRequest

PROMPT = "a lighthouse at dusk"


@pytest.fixture
async def gpt(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> AsyncIterator[Harness]:
    async with run_bot(
        fake_discord, fake_images_api, settings_factory(model="gpt-image-1")
    ) as running:
        yield running


async def imagine(h: Harness, size: str) -> StoredMessage:
    before = seen_ids(h.fake)
    await h.fake.slash("imagine", {"prompt": PROMPT, "count": 1, "size": size})
    return await new_result(h, before)


async def act(
    h: Harness, result: StoredMessage, action: str
) -> tuple[StoredMessage, RecordedRequest]:
    before = seen_ids(h.fake)
    click = await h.fake.click(result, f"ib:act:{action}:{job_id_of(result)}:0", user=h.fake.user)
    assert (await click.response()).ephemeral
    made = await new_result(h, before)
    request = h.api.requests[-1]
    assert request.path == "/v1/images/edits"
    return made, request


def sent(request: RecordedRequest, name: str) -> Image.Image:
    upload = request.file(name)
    assert upload is not None, name
    image = Image.open(io.BytesIO(upload.data))
    image.load()
    return image


def alpha(image: Image.Image, xy: tuple[int, int]) -> int:
    value = image.convert("RGBA").getpixel(xy)
    assert isinstance(value, tuple)
    return int(value[3])


def rgb(image: Image.Image, xy: tuple[int, int]) -> tuple[int, int, int]:
    value = image.convert("RGBA").getpixel(xy)
    assert isinstance(value, tuple)
    return (int(value[0]), int(value[1]), int(value[2]))


def opaque_box(image: Image.Image) -> tuple[int, int, int, int] | None:
    """Where the picture lies on the canvas: the box of its opaque pixels."""
    return image.convert("RGBA").getchannel("A").point(lambda v: 255 if v else 0).getbbox()


async def test_zoom_out_2x_centres_the_result_at_half_size_on_a_transparent_border(
    gpt: Harness,
) -> None:
    result = await imagine(gpt, "1024x1024")
    colour = colour_of(result.files["image_1.png"])

    zoomed, request = await act(gpt, result, "zoom_2")

    canvas, mask = sent(request, "image"), sent(request, "mask")
    assert canvas.size == mask.size == (1024, 1024) and request.body["size"] == "1024x1024"
    assert opaque_box(canvas) == (256, 256, 768, 768)
    assert opaque_box(mask) == (256, 256, 768, 768)  # the mask paints the border only
    assert rgb(canvas, (512, 512)) == colour and rgb(canvas, (300, 700)) == colour
    assert alpha(canvas, (0, 0)) == alpha(canvas, (1023, 600)) == 0
    assert (
        request.body["prompt"].startswith(CANVAS_INSTRUCTION) and PROMPT in request.body["prompt"]
    )
    assert "input_fidelity" not in request.body

    job = await store.get_job(gpt.bot.storage.sessions, job_id_of(zoomed))  # type: ignore[union-attr]
    assert job is not None and job.action == "zoom_2" and job.command == "zoom_2"
    assert (job.source_job_id, job.source_index) == (job_id_of(result), 0)
    assert job.cost_micro_usd > 0 and field_value(zoomed, "Cost") != "$0.00"


async def test_pan_right_makes_a_wider_canvas_with_the_new_band_on_the_right(gpt: Harness) -> None:
    result = await imagine(gpt, "1024x1024")
    colour = colour_of(result.files["image_1.png"])

    panned, request = await act(gpt, result, "pan_right")
    assert panned.embeds[0]["title"] == "Pan right of image 1"

    canvas = sent(request, "image")
    assert canvas.size == (1536, 1024) and request.body["size"] == "1536x1024"
    assert opaque_box(canvas) == (0, 0, 1024, 1024)
    assert opaque_box(sent(request, "mask")) == (0, 0, 1024, 1024)
    assert rgb(canvas, (10, 512)) == colour and alpha(canvas, (1535, 512)) == 0


async def test_pan_left_puts_the_band_on_the_left(gpt: Harness) -> None:
    result = await imagine(gpt, "1024x1024")
    _, request = await act(gpt, result, "pan_left")
    canvas = sent(request, "image")
    assert canvas.size == (1536, 1024) and opaque_box(canvas) == (512, 0, 1536, 1024)


async def test_pan_down_on_a_landscape_result_makes_it_taller(gpt: Harness) -> None:
    result = await imagine(gpt, "1536x1024")
    _, request = await act(gpt, result, "pan_down")
    canvas = sent(request, "image")
    # 1536x1536 is no GPT size: the squarest it has, the picture across its width, band below.
    assert canvas.size == (1024, 1024) and request.body["size"] == "1024x1024"
    box = opaque_box(canvas)
    assert box is not None and box[0] == 0 and box[2] == 1024 and box[1] == 0
    assert box[3] == 683 and alpha(canvas, (512, 1023)) == 0


async def test_make_square_is_offered_on_a_landscape_result_and_pads_it_top_and_bottom(
    gpt: Harness,
) -> None:
    square = await imagine(gpt, "1024x1024")
    assert not any(":square:" in custom_id for custom_id in square.custom_ids)
    landscape = await imagine(gpt, "1536x1024")
    assert f"ib:act:square:{job_id_of(landscape)}:0" in landscape.custom_ids

    _, request = await act(gpt, landscape, "square")

    canvas = sent(request, "image")
    assert canvas.size == (1024, 1024) and request.body["size"] == "1024x1024"
    assert opaque_box(canvas) == (0, 170, 1024, 853)
    assert alpha(canvas, (512, 0)) == alpha(canvas, (512, 1023)) == 0


async def test_on_dall_e_2_zoom_out_keeps_the_results_square_size(harness: Harness) -> None:
    result = await imagine(harness, "256x256")
    colour = colour_of(result.files["image_1.png"])

    zoomed, request = await act(harness, result, "zoom_1_5")

    canvas = sent(request, "image")
    assert canvas.size == (256, 256) and canvas.mode == "RGBA" and request.body["size"] == "256x256"
    assert opaque_box(canvas) == (42, 42, 213, 213)  # 171 px: 256 / 1.5, centred
    assert rgb(canvas, (128, 128)) == colour and alpha(canvas, (5, 128)) == 0
    assert field_value(zoomed, "Cost") == "$0.016"  # a dall-e-2 256x256 edit


async def test_on_dall_e_2_a_pan_moves_the_picture_over_by_a_quarter(harness: Harness) -> None:
    result = await imagine(harness, "256x256")
    _, request = await act(harness, result, "pan_up")
    canvas = sent(request, "image")
    assert canvas.size == (256, 256) and opaque_box(canvas) == (0, 64, 256, 256)


async def test_redo_of_a_zoomed_result_sends_the_same_canvas_not_a_zoom_of_it(
    harness: Harness,
) -> None:
    zoomed, first = await act(harness, await imagine(harness, "256x256"), "zoom_2")
    before = seen_ids(harness.fake)
    await harness.fake.click(zoomed, f"ib:redo:{job_id_of(zoomed)}", user=harness.fake.user)
    await new_result(harness, before)
    again = harness.api.requests[-1]
    assert again.path == "/v1/images/edits"
    assert (
        opaque_box(sent(again, "image")) == opaque_box(sent(first, "image")) == (64, 64, 192, 192)
    )
    assert opaque_box(sent(again, "mask")) == (64, 64, 192, 192)


async def test_a_studio_button_from_before_a_restart_still_works(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory()
    async with run_bot(fake_discord, fake_images_api, settings) as first_bot:
        old = await imagine(first_bot, "256x256")
    async with run_bot(fake_discord, fake_images_api, settings) as second_bot:
        _, request = await act(second_bot, old, "pan_right")
    assert opaque_box(sent(request, "image")) == (0, 0, 192, 256)
    assert fake_discord.spec_violations == [] and fake_images_api.spec_violations == []


async def test_an_action_counts_against_the_members_daily_images(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    quotas = dataclasses.replace(ROOMY_QUOTAS, member_images_per_day=2)
    async with run_bot(fake_discord, fake_images_api, settings_factory(quotas=quotas)) as h:
        result = await imagine(h, "256x256")  # the first of the member's two
        zoomed, _ = await act(h, result, "zoom_2")  # the second
        calls = len(h.api.requests)
        click = await h.fake.click(
            zoomed, f"ib:act:pan_left:{job_id_of(zoomed)}:0", user=h.fake.user
        )
        answer = await click.wait_message()
        await h.idle()
    assert answer.ephemeral and answer.content.startswith("You have used your 2 images for today")
    assert len(h.api.requests) == calls
