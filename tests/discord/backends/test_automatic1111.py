"""Every command, button and reaction on an AUTOMATIC1111 backend, as a member sees them."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.db.models import JobStatus
from bot.discord.i18n import Catalog
from bot.providers.automatic1111 import VARY_DENOISING
from bot.testing.automatic1111 import FakeAutomatic1111
from bot.testing.discord import FakeDiscord, StoredMessage
from bot.testing.harness import (
    Harness,
    a1111_backend,
    job_id_of,
    make_settings,
    new_result,
    run_bot,
    seen_ids,
)
from bot.testing.images import colour_of, decode_image, png_bytes
from bot.testing.openai_api import FakeImagesAPI
from tests.discord.backends.conftest import stored_job

CATALOG = Catalog.load()
GREEN = (10, 200, 30)


@pytest.fixture
async def a1111() -> AsyncIterator[FakeAutomatic1111]:
    async with FakeAutomatic1111(auth=("bot", "pw-SECRET"), step_delay=0.001) as server:
        yield server


@pytest.fixture
async def sd(
    tmp_path: Path,
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    a1111: FakeAutomatic1111,
) -> AsyncIterator[Harness]:
    """The bot with ``[provider] type = "automatic1111"``."""
    settings = make_settings(tmp_path, fake_discord, fake_images_api, **a1111_backend(a1111))
    async with run_bot(fake_discord, fake_images_api, settings, a1111=a1111) as running:
        yield running
    assert fake_discord.spec_violations == []
    assert fake_images_api.requests == []  # nothing went to the OpenAI fake


async def test_imagine_runs_txt2img_and_posts_the_images(
    sd: Harness, a1111: FakeAutomatic1111
) -> None:
    fake = sd.fake
    before = seen_ids(fake)
    handle = await fake.slash("imagine", {"prompt": "a lighthouse at dusk", "count": 2})
    assert (await handle.response()).ephemeral
    result = await new_result(sd, before)
    assert len(result.attachments) == 2
    assert result.embeds[0]["description"] == "a lighthouse at dusk"
    ((_, body),) = [(p, b) for p, b in a1111.requests if p.endswith("txt2img")]
    assert body["prompt"] == "a lighthouse at dusk" and body["batch_size"] == 2
    assert (body["width"], body["height"]) == (512, 512)
    stored = await stored_job(sd, job_id_of(result))
    assert stored.backend == "default" and stored.model == "automatic1111"
    assert stored.cost_micro_usd == 0  # self-hosted: free unless the operator prices it


async def test_cancel_while_running_interrupts_our_job_and_posts_nothing(
    sd: Harness, a1111: FakeAutomatic1111
) -> None:
    fake = sd.fake
    a1111.step_delay = 0.05  # 20 steps: a second of work, time to press Cancel
    handle = await fake.slash("imagine", {"prompt": "a slow sunrise"})
    working = CATALOG.text("status.working", n=1)
    status = await handle.wait_message(lambda m: m.content == working and bool(m.custom_ids))
    (cancel,) = status.custom_ids
    task = await a1111.wait_running(step=2)
    click = await fake.click(status, cancel, user=fake.user)
    assert (await click.response()).type == 7  # the status message itself says so
    assert handle.original is not None
    assert handle.original.content == CATALOG.text("status.cancelled")
    assert handle.original.components == []
    await sd.idle()
    await _eventually(lambda: a1111.interrupts == [task])  # ours, and only ours
    await _eventually(lambda: a1111.runs[0].interrupted)  # the server stopped it
    assert [run.task_id for run in a1111.runs] == [task]
    job = await stored_job(sd, int(cancel.split(":")[2]))
    assert job.status is JobStatus.CANCELLED
    assert (job.n_charged, job.cost_micro_usd, job.possibly_billed) == (0, 0, False)
    await asyncio.sleep(0.2)
    assert not [m for m in fake.state.messages.values() if m.attachments]  # nothing posted


async def _eventually(check: Callable[[], bool], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110 - the fake has no event for it
            await asyncio.sleep(0.01)


def sd_calls(a1111: FakeAutomatic1111, path: str) -> list[dict[str, Any]]:
    return [body for sent, body in a1111.requests if sent == f"/sdapi/v1/{path}"]


async def edit(sd: Harness) -> StoredMessage:
    fake = sd.fake
    image = fake.add_attachment(png_bytes(256, 256, GREEN), "photo.png")
    mask = fake.add_attachment(png_bytes(256, 256, (0, 0, 0), hole=(64, 64, 191, 191)), "mask.png")
    before = seen_ids(fake)
    options = {"image": image, "mask": mask, "prompt": "add a kite"}
    handle = await fake.slash("edit", options)
    assert (await handle.response()).ephemeral
    return await new_result(sd, before)


async def test_edit_repaints_only_the_masked_area_with_img2img(
    sd: Harness, a1111: FakeAutomatic1111
) -> None:
    result = await edit(sd)
    assert result.embeds[0]["title"] == "Edit"
    (body,) = sd_calls(a1111, "img2img")
    assert body["prompt"] == "add a kite" and body["inpainting_fill"] == 1
    # A1111's convention: white repaints. Ours (transparent) converted, not sent as it is.
    sent_mask = decode_image(base64.b64decode(body["mask"])).convert("L")
    assert sent_mask.getpixel((128, 128)) == 255 and sent_mask.getpixel((5, 5)) == 0
    made = decode_image(result.files["image_1.png"]).convert("RGB")
    assert made.size == (256, 256)
    assert made.getpixel((5, 5)) == GREEN  # outside the mask: the upload's own pixels


async def test_redo_of_an_edit_sends_the_kept_image_and_mask_again(
    sd: Harness, a1111: FakeAutomatic1111
) -> None:
    first = await edit(sd)
    before = seen_ids(sd.fake)
    click = await sd.fake.click(first, f"ib:redo:{job_id_of(first)}", user=sd.fake.user)
    assert (await click.response()).ephemeral
    again = await new_result(sd, before)
    assert again.embeds[0]["description"] == "add a kite"
    one, two = sd_calls(a1111, "img2img")
    assert (one["init_images"], one["mask"]) == (two["init_images"], two["mask"])
    assert (await stored_job(sd, job_id_of(again))).backend == "default"


async def test_vary_command_runs_img2img_of_the_upload(
    sd: Harness, a1111: FakeAutomatic1111
) -> None:
    fake = sd.fake
    image = fake.add_attachment(png_bytes(320, 192, GREEN), "photo.png")
    before = seen_ids(fake)
    handle = await fake.slash("vary", {"image": image, "count": 2})
    assert (await handle.response()).ephemeral
    result = await new_result(sd, before)
    assert len(result.attachments) == 2
    (body,) = sd_calls(a1111, "img2img")
    assert body["denoising_strength"] == VARY_DENOISING and "mask" not in body
    assert body["width"] % 8 == 0 and body["height"] % 8 == 0 and body["width"] > body["height"]


async def test_the_vary_button_and_the_reaction_redraw_a_result_with_its_prompt(
    sd: Harness, a1111: FakeAutomatic1111
) -> None:
    fake = sd.fake
    before = seen_ids(fake)
    await fake.slash("imagine", {"prompt": "a red barn in snow", "count": 2})
    first = await new_result(sd, before)
    job = job_id_of(first)

    before = seen_ids(fake)
    click = await fake.click(first, f"ib:vary:{job}:1", user=fake.admin)
    assert (await click.response()).ephemeral
    varied = await new_result(sd, before)
    assert varied.embeds[0]["title"] == "Variation of image 2"
    assert len(varied.attachments) == 2  # as many as the result had

    before = seen_ids(fake)
    await fake.react(first, "🔄", user=fake.user)
    reacted = await new_result(sd, before)
    assert reacted.source == "channel" and reacted.pinged_ids == [fake.user.id]

    button_call, reaction_call = sd_calls(a1111, "img2img")
    for call, index in ((button_call, 1), (reaction_call, 0)):
        # The source's prompt keeps its subject; the source image is the one picked.
        assert call["prompt"] == "a red barn in snow"
        sent = base64.b64decode(call["init_images"][0])
        assert colour_of(sent) == colour_of(first.files[f"image_{index + 1}.png"])
