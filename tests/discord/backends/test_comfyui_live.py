"""A ComfyUI job as the member watches it: previews while it forms, Cancel while it runs, the
server down, and failover to a second backend, through the real bot and fake Discord."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path

import aiohttp
import pytest

from bot.config import ProviderSettings
from bot.db.models import JobStatus
from bot.testing.automatic1111 import FakeAutomatic1111
from bot.testing.comfyui import FakeComfyUI
from bot.testing.discord import FakeDiscord
from bot.testing.harness import (
    Harness,
    a1111_backend,
    comfyui_backend,
    en,
    job_id_of,
    make_settings,
    new_result,
    run_bot,
    seen_ids,
)
from bot.testing.images import decode_image
from bot.testing.openai_api import FakeImagesAPI
from tests.discord.backends.conftest import stored_job
from tests.discord.backends.test_failover import closed_port_url
from tests.discord.generate.test_progress import DONE, progress_edits, result_post, shows

#: The workflows the bot ships (another client of the server sends the same graph).
WORKFLOWS = resources.files("bot.providers").joinpath("comfyui_workflows")


@pytest.fixture
async def comfy() -> AsyncIterator[FakeComfyUI]:
    async with FakeComfyUI(step_delay=0.05) as server:  # 20 steps: a second of work
        yield server


@pytest.fixture
async def sd(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI, comfy: FakeComfyUI
) -> AsyncIterator[Harness]:
    settings = make_settings(tmp_path, fake_discord, fake_images_api, **comfyui_backend(comfy))
    async with run_bot(fake_discord, fake_images_api, settings) as running:
        yield running
    assert fake_discord.spec_violations == []
    assert fake_images_api.requests == []


async def test_previews_show_in_the_status_before_the_result_and_none_after(
    sd: Harness, comfy: FakeComfyUI
) -> None:
    fake = sd.fake
    handle = await fake.slash("imagine", {"prompt": "a lighthouse"}, user=fake.user)
    result = await sd.result(timeout=30)
    await shows(handle, lambda m: m.content == DONE)
    await sd.idle()
    assert len(result.attachments) == 1
    (run,) = comfy.runs.values()
    posted = result_post(fake)
    edits = progress_edits(fake)
    with_preview = [e for e in edits if e.files]
    assert with_preview, [e.json for e in edits]
    assert len(run.previews) >= len(with_preview)
    for edit in with_preview:
        (upload,) = edit.files
        assert upload.filename == "preview.jpg"  # ComfyUI's JPEG frame, as it came
        assert decode_image(upload.data).size == (64, 64)  # latent2rgb: an eighth of 512
    assert all(e.at < posted.at for e in edits)
    after = [r for r in fake.requests if r.method == "PATCH" and r.at > posted.at]
    assert [r.json["content"] for r in after] == [DONE]
    assert handle.original is not None and handle.original.attachments == []


async def test_cancel_while_running_interrupts_our_prompt_and_posts_nothing(
    sd: Harness, comfy: FakeComfyUI
) -> None:
    fake = sd.fake
    handle = await fake.slash("imagine", {"prompt": "a slow sunrise"})
    working = en(sd, "status.working", n=1)
    status = await handle.wait_message(lambda m: m.content == working and bool(m.custom_ids))
    (cancel,) = status.custom_ids
    prompt_id = await comfy.wait_running()
    click = await fake.click(status, cancel, user=fake.user)
    assert (await click.response()).type == 7  # the status message itself says so
    assert handle.original is not None
    assert handle.original.content == en(sd, "status.cancelled")
    await sd.idle()
    await comfy.wait_until(lambda: comfy.interrupts == [prompt_id], within=5)  # ours, by id
    await comfy.wait_until(lambda: prompt_id in comfy.history, within=5)
    assert comfy.history[prompt_id]["status"]["completed"] is False  # the server stopped it
    job = await stored_job(sd, int(cancel.split(":")[2]))
    assert job.status is JobStatus.CANCELLED
    assert (job.n_charged, job.cost_micro_usd, job.possibly_billed) == (0, 0, False)
    await asyncio.sleep(0.2)
    assert not [m for m in fake.state.messages.values() if m.attachments]  # nothing posted


async def test_comfyui_down_tells_the_member_the_service_is_unavailable(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI, comfy: FakeComfyUI
) -> None:
    down = comfyui_backend(comfy, base_url=closed_port_url())
    settings = make_settings(tmp_path, fake_discord, fake_images_api, **down)
    async with run_bot(fake_discord, fake_images_api, settings) as harness:
        handle = await harness.fake.slash("imagine", {"prompt": "a fox"})
        text = en(harness, "provider.unavailable")
        message = await handle.wait_message(lambda m: m.content == text)
        assert message.ephemeral and not message.attachments
        await harness.idle()
        job = await stored_job(harness, 1)
    assert job.status is JobStatus.FAILED and job.cost_micro_usd == 0
    assert not [m for m in fake_discord.state.messages.values() if m.attachments]
    assert comfy.prompts == [] and fake_images_api.requests == []


async def test_comfyui_answering_503_fails_over_to_the_automatic1111_server(
    tmp_path: Path,
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    comfy: FakeComfyUI,
    a1111: FakeAutomatic1111,
) -> None:
    gpu = ProviderSettings(**a1111_backend(a1111))
    settings = make_settings(
        tmp_path,
        fake_discord,
        fake_images_api,
        backends={"gpu": gpu},
        **comfyui_backend(comfy, fallback=("gpu",)),
    )
    async with run_bot(fake_discord, fake_images_api, settings, a1111=a1111) as harness:
        comfy.answer_next(503)
        before = seen_ids(harness.fake)
        await harness.fake.slash("imagine", {"prompt": "a harbour at night"})
        result = await new_result(harness, before)
        job = await stored_job(harness, job_id_of(result))
        assert (job.status, job.backend, job.model) == (JobStatus.DELIVERED, "gpu", "automatic1111")
        assert len(result.attachments) == 1
        assert [path for path, _ in a1111.requests if "2img" in path] == ["/sdapi/v1/txt2img"]
        assert comfy.runs == {}  # nothing was made there
        # The next job goes to ComfyUI first again.
        before = seen_ids(harness.fake)
        await harness.fake.slash("imagine", {"prompt": "a quiet bay"})
        second = await stored_job(harness, job_id_of(await new_result(harness, before)))
    assert (second.backend, second.model) == ("default", "comfyui") and len(comfy.runs) == 1


async def test_cancel_while_waiting_in_comfyuis_queue_deletes_our_prompt_there(
    sd: Harness, comfy: FakeComfyUI
) -> None:
    """Someone else's prompt runs on the shared server: our job's prompt waits in its queue,
    and Cancel takes it off the queue (their prompt is not interrupted)."""
    fake = sd.fake
    graph = json.loads(WORKFLOWS.joinpath("txt2img.json").read_text(encoding="utf-8"))
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{comfy.base_url}/prompt", json={"prompt": graph}) as answer,
    ):
        assert answer.status == 200
        theirs = (await answer.json())["prompt_id"]
    await comfy.wait_running(theirs)
    handle = await fake.slash("imagine", {"prompt": "a slow sunrise"})
    working = en(sd, "status.working", n=1)
    status = await handle.wait_message(lambda m: m.content == working and bool(m.custom_ids))
    await comfy.wait_until(lambda: len(comfy.pending_prompts) == 1, within=5)
    (ours,) = comfy.pending_prompts
    (cancel,) = status.custom_ids
    click = await fake.click(status, cancel, user=fake.user)
    assert (await click.response()).type == 7
    await sd.idle()
    await comfy.wait_until(lambda: comfy.deleted == [ours], within=5)
    assert comfy.interrupts == []  # their prompt runs on
    await comfy.wait_until(lambda: theirs in comfy.history, within=10)
    assert ours not in comfy.runs or not comfy.runs[ours].started
    job = await stored_job(sd, int(cancel.split(":")[2]))
    assert job.status is JobStatus.CANCELLED and job.cost_micro_usd == 0
    assert not [m for m in fake.state.messages.values() if m.attachments]
