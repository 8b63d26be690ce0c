"""U1…Un on the Stable Diffusion servers: their own upscalers, as the operator configured them."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from bot.db.models import JobStatus
from bot.discord.i18n import Catalog
from bot.providers.errors import UnknownUpscaler
from bot.testing.automatic1111 import FakeAutomatic1111
from bot.testing.comfyui import FakeComfyUI
from bot.testing.discord import FakeDiscord, StoredMessage
from bot.testing.harness import (
    Harness,
    a1111_backend,
    comfyui_backend,
    job_id_of,
    make_settings,
    new_result,
    run_bot,
    seen_ids,
)
from bot.testing.images import colour_of, decode_image
from bot.testing.openai_api import FakeImagesAPI
from tests.discord.backends.conftest import stored_job

CATALOG = Catalog.load()
PRICE = 0.01  # the operator's price of one image of the GPU server


async def imagine(harness: Harness, n: int = 2) -> StoredMessage:
    before = seen_ids(harness.fake)
    handle = await harness.fake.slash("imagine", {"prompt": "a lighthouse at dusk", "count": n})
    assert (await handle.response()).ephemeral
    return await new_result(harness, before)


async def upscale(harness: Harness, result: StoredMessage, index: int) -> StoredMessage:
    before = seen_ids(harness.fake)
    click = await harness.fake.click(result, f"ib:act:upscale:{job_id_of(result)}:{index}")
    assert (await click.response()).ephemeral
    return await new_result(harness, before)


def extras_requests(a1111: FakeAutomatic1111) -> list[dict[str, Any]]:
    return [body for path, body in a1111.requests if path == "/sdapi/v1/extra-single-image"]


async def test_a1111_u2_sends_image_2_to_extra_single_image_with_the_default_upscaler(
    tmp_path: Path,
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    a1111: FakeAutomatic1111,
) -> None:
    backend = a1111_backend(a1111, price_per_image_usd=PRICE)
    settings = make_settings(tmp_path, fake_discord, fake_images_api, **backend)
    async with run_bot(fake_discord, fake_images_api, settings, a1111=a1111) as harness:
        first = await imagine(harness)
        result = await upscale(harness, first, 1)
        (body,) = extras_requests(a1111)
        assert body["upscaler_1"] == "R-ESRGAN 4x+" and body["upscaling_resize"] == 2
        assert body["resize_mode"] == 0
        sent = base64.b64decode(body["image"])
        assert colour_of(sent) == colour_of(first.files["image_2.png"])
        assert a1111.upscales == [("R-ESRGAN 4x+", (512, 512), (1024, 1024))]
        assert not [r for r in a1111.runs if r.path.endswith("img2img")]  # no repaint

        assert result.embeds[0]["title"] == "Upscale of image 2"
        assert list(result.files) == ["image_1.png"]
        upscaled = result.files["image_1.png"]
        assert decode_image(upscaled).size == (1024, 1024)
        assert colour_of(upscaled) == colour_of(first.files["image_2.png"])
        job = await stored_job(harness, job_id_of(result))
        assert (job.source_job_id, job.source_index, job.action) == (job_id_of(first), 1, "upscale")
        assert job.cost_micro_usd == 10_000  # one image at the operator's price
        assert job.size == "1024x1024"
    assert fake_discord.spec_violations == []


async def test_a1111_uses_the_operators_upscaler(
    tmp_path: Path,
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    a1111: FakeAutomatic1111,
) -> None:
    backend = a1111_backend(a1111, upscaler="SwinIR 4x")
    settings = make_settings(tmp_path, fake_discord, fake_images_api, **backend)
    async with run_bot(fake_discord, fake_images_api, settings, a1111=a1111) as harness:
        await upscale(harness, await imagine(harness), 0)
    assert [body["upscaler_1"] for body in extras_requests(a1111)] == ["SwinIR 4x"]


async def test_a1111_an_upscaler_the_server_lacks_is_named_with_the_ones_it_has(
    tmp_path: Path,
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    a1111: FakeAutomatic1111,
) -> None:
    backend = a1111_backend(a1111, upscaler="4x-UltraMega")
    settings = make_settings(tmp_path, fake_discord, fake_images_api, **backend)
    async with run_bot(fake_discord, fake_images_api, settings, a1111=a1111) as harness:
        first = await imagine(harness)
        click = await harness.fake.click(first, f"ib:act:upscale:{job_id_of(first)}:0")
        assert (await click.response()).ephemeral
        expected = str(
            UnknownUpscaler(
                upscaler="4x-UltraMega",
                allowed="ESRGAN_4x, LDSR, R-ESRGAN 4x+, R-ESRGAN 4x+ Anime6B, SwinIR 4x",
            )
        )
        assert "provider.upscaler" in expected
        told = await click.wait_message(lambda m: m.content == expected)
        assert told.ephemeral
        await harness.idle()
        assert extras_requests(a1111) == []  # checked against /sdapi/v1/upscalers first
        posted = [m for m in harness.fake.state.messages.values() if m.attachments]
        assert len(posted) == 1  # only the first result
        jobs = await stored_job(harness, job_id_of(first) + 1)
        assert jobs.status is JobStatus.FAILED and not jobs.cost_micro_usd


async def test_comfyui_runs_the_upscale_workflow_with_the_model_of_provider_upscaler(
    tmp_path: Path,
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
) -> None:
    async with FakeComfyUI(step_delay=0.001) as comfy:
        default = make_settings(tmp_path, fake_discord, fake_images_api, **comfyui_backend(comfy))
        async with run_bot(fake_discord, fake_images_api, default) as harness:
            first = await imagine(harness)
            result = await upscale(harness, first, 1)
            assert comfy.sent_inputs("imagebot:upscaler")["model_name"] == "RealESRGAN_x4plus.pth"
            folder, _, name = comfy.sent_inputs("imagebot:image")["image"].rpartition("/")
            assert colour_of(comfy.files[("input", folder, name)]) == colour_of(
                first.files["image_2.png"]
            )
            upscaled = result.files["image_1.png"]
            assert decode_image(upscaled).size == (2048, 2048)  # 512 by the model's 4x
            assert colour_of(upscaled) == colour_of(first.files["image_2.png"])
            assert result.embeds[0]["title"] == "Upscale of image 2"
            job = await stored_job(harness, job_id_of(result))
            assert job.source_job_id == job_id_of(first) and job.action == "upscale"

        two_x = make_settings(
            tmp_path,
            fake_discord,
            fake_images_api,
            **comfyui_backend(comfy, upscaler="RealESRGAN_x2plus.pth"),
        )
        async with run_bot(fake_discord, fake_images_api, two_x) as harness:
            result = await upscale(harness, await imagine(harness, n=2), 0)
            assert comfy.sent_inputs("imagebot:upscaler")["model_name"] == "RealESRGAN_x2plus.pth"
            assert decode_image(result.files["image_1.png"]).size == (1024, 1024)
    assert fake_discord.spec_violations == []


async def test_comfyui_an_upscale_model_the_server_lacks_is_named_with_the_ones_it_has(
    tmp_path: Path,
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
) -> None:
    async with FakeComfyUI(step_delay=0.001) as comfy:
        backend = comfyui_backend(comfy, upscaler="8x-Imaginary.pth")
        settings = make_settings(tmp_path, fake_discord, fake_images_api, **backend)
        async with run_bot(fake_discord, fake_images_api, settings) as harness:
            first = await imagine(harness)
            prompts = len(comfy.prompts)
            click = await harness.fake.click(first, f"ib:act:upscale:{job_id_of(first)}:0")
            expected = str(
                UnknownUpscaler(
                    upscaler="8x-Imaginary.pth", allowed=", ".join(comfy.upscale_models)
                )
            )
            told = await click.wait_message(lambda m: m.content == expected)
            assert told.ephemeral
            await harness.idle()
            assert len(comfy.prompts) == prompts  # no graph sent
