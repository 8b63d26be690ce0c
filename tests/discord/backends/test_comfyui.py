"""Every command, button and reaction on a ComfyUI backend, as a member sees them."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from bot.jobs import store
from bot.testing.comfyui import FakeComfyUI
from bot.testing.discord import FakeDiscord, StoredMessage
from bot.testing.harness import (
    Harness,
    comfyui_backend,
    en,
    job_id_of,
    make_settings,
    new_result,
    run_bot,
    seen_ids,
)
from bot.testing.images import png_bytes
from bot.testing.openai_api import FakeImagesAPI


@pytest.fixture
async def comfy() -> AsyncIterator[FakeComfyUI]:
    async with FakeComfyUI(step_delay=0.001) as server:
        yield server


@pytest.fixture
async def sd(
    tmp_path: Path,
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    comfy: FakeComfyUI,
) -> AsyncIterator[Harness]:
    """The bot with ``[provider] type = "comfyui"`` and the shipped workflows."""
    settings = make_settings(tmp_path, fake_discord, fake_images_api, **comfyui_backend(comfy))
    async with run_bot(fake_discord, fake_images_api, settings) as running:
        yield running
    assert fake_discord.spec_violations == []
    assert fake_images_api.requests == []  # nothing went to the OpenAI fake


async def imagine(
    harness: Harness, prompt: str = "a lighthouse at dusk", n: int = 2
) -> StoredMessage:
    before = seen_ids(harness.fake)
    handle = await harness.fake.slash("imagine", {"prompt": prompt, "count": n})
    assert (await handle.response()).ephemeral
    return await new_result(harness, before)


async def test_imagine_runs_txt2img_and_posts_the_images(sd: Harness, comfy: FakeComfyUI) -> None:
    result = await imagine(sd)
    assert len(result.attachments) == 2
    assert result.embeds[0]["description"] == "a lighthouse at dusk"
    assert comfy.sent_inputs("imagebot:prompt")["text"] == "a lighthouse at dusk"
    assert comfy.sent_inputs("imagebot:size")["batch_size"] == 2
    with Image.open(io.BytesIO(result.files["image_1.png"])) as image:
        assert image.size == (512, 512)  # the shipped workflow's size
    stored = await store.get_job(sd.bot.storage.sessions, job_id_of(result))
    assert stored is not None and stored.backend == "default" and stored.model == "comfyui"
    assert stored.cost_micro_usd == 0


async def test_edit_uploads_picture_and_mask_and_keeps_the_unmasked_pixels(
    sd: Harness, comfy: FakeComfyUI
) -> None:
    fake = sd.fake
    image = fake.add_attachment(png_bytes(256, 256, (10, 200, 30)), "photo.png")
    mask = fake.add_attachment(png_bytes(256, 256, (0, 0, 0), hole=(64, 64, 191, 191)), "m.png")
    before = seen_ids(fake)
    handle = await fake.slash(
        "edit", {"image": image, "mask": mask, "prompt": "add a hot-air balloon"}
    )
    assert (await handle.response()).ephemeral
    result = await new_result(sd, before)
    assert result.embeds[0]["title"] == "Edit"
    graph = comfy.sent_graph()
    assert graph["13"]["class_type"] == "LoadImageMask"
    assert comfy.sent_inputs("imagebot:mask")["image"] in comfy.uploads
    assert comfy.sent_inputs("imagebot:image")["image"] in comfy.uploads
    with Image.open(io.BytesIO(result.files["image_1.png"])) as picture:
        rgb = picture.convert("RGB")
        assert rgb.getpixel((10, 10)) == (10, 200, 30)  # outside the mask: kept
        assert rgb.getpixel((128, 128)) != (10, 200, 30)  # inside: repainted


async def test_vary_command_runs_img2img_of_the_upload(sd: Harness, comfy: FakeComfyUI) -> None:
    fake = sd.fake
    upload = fake.add_attachment(png_bytes(256, 256, (200, 60, 40)), "photo.png")
    before = seen_ids(fake)
    handle = await fake.slash("vary", {"image": upload, "count": 2})
    assert (await handle.response()).ephemeral
    result = await new_result(sd, before)
    assert len(result.attachments) == 2
    graph = comfy.sent_graph()
    assert graph["3"]["inputs"]["denoise"] == 0.6
    assert comfy.sent_inputs("imagebot:batch")["amount"] == 2


async def test_the_vary_button_varies_that_image_with_its_prompt(
    sd: Harness, comfy: FakeComfyUI
) -> None:
    fake = sd.fake
    first = await imagine(sd, prompt="a red bicycle")
    before = seen_ids(fake)
    click = await fake.click(first, f"ib:vary:{job_id_of(first)}:1", user=fake.admin)
    assert (await click.response()).ephemeral
    result = await new_result(sd, before)
    assert result.embeds[0]["title"] == "Variation of image 2"
    graph = comfy.sent_graph()
    assert graph["10"]["class_type"] == "LoadImage"
    assert comfy.sent_inputs("imagebot:prompt")["text"] == "a red bicycle"


async def test_the_vary_reaction_varies_image_1(sd: Harness, comfy: FakeComfyUI) -> None:
    fake = sd.fake
    first = await imagine(sd, n=1)
    before = seen_ids(fake)
    await fake.react(first, "🔄", user=fake.user)
    result = await new_result(sd, before)
    assert result.embeds[0]["title"] == "Variation of image 1"
    assert len(comfy.prompts) == 2 and comfy.sent_graph()["10"]["class_type"] == "LoadImage"


async def test_a_workflow_comfyui_refuses_is_the_operators_problem_told_privately(
    sd: Harness, comfy: FakeComfyUI, caplog: pytest.LogCaptureFixture
) -> None:
    comfy.checkpoints = ("other.safetensors",)  # the workflow's own checkpoint is gone
    handle = await sd.fake.slash("imagine", {"prompt": "a fox"})
    response = await handle.response()
    assert response.type == 5 and response.ephemeral
    text = en(sd, "error.operator")
    message = await handle.wait_message(lambda m: m.content == text)
    assert message.ephemeral and not message.attachments
    await sd.idle()
    assert [m for m in sd.fake.messages(sources=("channel",)) if not m.ephemeral] == []
    assert "node 4 'imagebot:checkpoint' (CheckpointLoaderSimple): Value not in list" in caplog.text


async def test_a_dropped_websocket_still_delivers_the_result(
    sd: Harness, comfy: FakeComfyUI
) -> None:
    comfy.drop_websockets_at_step = 2
    result = await imagine(sd, n=1)
    assert len(result.attachments) == 1
    assert not comfy.accept_websockets  # it was dropped mid-job


async def test_the_vary_button_keeps_the_sd_options_with_a_new_seed(
    sd: Harness, comfy: FakeComfyUI
) -> None:
    fake = sd.fake
    before = seen_ids(fake)
    options = {"negative": "fog", "seed": 4242, "steps": 9, "guidance": 5.5, "sampler": "heun"}
    await fake.slash(
        "imagine",
        {"prompt": "a red bicycle", "checkpoint": "sd_xl_base_1.0", "count": 2, **options},
    )
    first = await new_result(sd, before)
    before = seen_ids(fake)
    await (await fake.click(first, f"ib:vary:{job_id_of(first)}:0", user=fake.user)).response()
    await new_result(sd, before)

    assert comfy.sent_graph()["10"]["class_type"] == "LoadImage"  # img2img of the result
    assert comfy.sent_inputs("imagebot:negative")["text"] == "fog"
    sampler = comfy.sent_inputs("imagebot:seed")
    assert (sampler["steps"], sampler["cfg"], sampler["sampler_name"]) == (9, 5.5, "heun")
    assert sampler["seed"] != 4242  # a variation is another take
    assert comfy.sent_inputs("imagebot:checkpoint")["ckpt_name"] == "sd_xl_base_1.0.safetensors"


@pytest.mark.parametrize(("action", "denoise"), [("vary_subtle", 0.35), ("vary_strong", 0.8)])
async def test_vary_subtle_and_strong_set_the_ksamplers_denoise(
    sd: Harness, comfy: FakeComfyUI, action: str, denoise: float
) -> None:
    first = await imagine(sd, n=1)
    before = seen_ids(sd.fake)
    click = await sd.fake.click(first, f"ib:act:{action}:{job_id_of(first)}:0", user=sd.fake.user)
    await click.response()
    await new_result(sd, before)
    assert comfy.sent_graph()["10"]["class_type"] == "LoadImage"  # img2img of the result
    assert comfy.sent_inputs("imagebot:seed")["denoise"] == denoise


async def test_zoom_out_inpaints_only_the_new_border(sd: Harness, comfy: FakeComfyUI) -> None:
    first = await imagine(sd, n=1)
    before = seen_ids(sd.fake)
    click = await sd.fake.click(first, f"ib:act:zoom_2:{job_id_of(first)}:0", user=sd.fake.user)
    await click.response()
    zoomed = await new_result(sd, before)
    assert comfy.sent_graph()["13"]["class_type"] == "LoadImageMask"  # the inpaint workflow
    with (
        Image.open(io.BytesIO(first.files["image_1.png"])) as source,
        Image.open(io.BytesIO(zoomed.files["image_1.png"])) as picture,
    ):
        assert picture.size == source.size
        middle = (source.width // 2, source.height // 2)
        colour = source.convert("RGB").getpixel(middle)
        assert picture.convert("RGB").getpixel(middle) == colour  # the picture, kept
        assert picture.convert("RGB").getpixel((2, 2)) != colour  # the border, painted
