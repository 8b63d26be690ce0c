"""The ComfyUI client against the fake server: what an operator and a member would notice."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from bot.config import ProviderSettings
from bot.imaging import ImageWorker
from bot.imaging.backend_masks import white_repaints
from bot.providers import (
    EditRequest,
    GenerateRequest,
    OperatorProblem,
    ProviderUnavailable,
    TooManyImages,
    UnknownModel,
    UnsupportedOption,
    UnsupportedSize,
    VaryRequest,
)
from bot.providers.backend import Backend
from bot.providers.comfyui import ComfyUIClient
from bot.providers.progress import ProgressUpdate
from bot.testing.comfyui import FakeComfyUI
from bot.testing.images import decode_image, png_bytes
from tests.providers.conftest import RecordingSleep

MakeClient = Callable[..., ComfyUIClient]


@pytest.fixture
async def comfy() -> AsyncIterator[FakeComfyUI]:
    async with FakeComfyUI(step_delay=0.002) as fake:
        yield fake


@pytest.fixture
def make_client(
    comfy: FakeComfyUI,
    session: aiohttp.ClientSession,
    images: ImageWorker,
    sleeps: RecordingSleep,
) -> MakeClient:
    async def convert_mask(mask: bytes) -> bytes:
        return await images.run(white_repaints, mask)

    def make(**overrides: Any) -> ComfyUIClient:
        values: dict[str, Any] = {"type": "comfyui", "base_url": comfy.base_url, "model": ""}
        values.update(overrides)
        return ComfyUIClient(
            session,
            ProviderSettings(**values),
            name="gpu",
            verify=images.verify_results,
            convert_mask=convert_mask,
            sleep=sleeps,
            poll_interval=0.01,
        )

    return make


class Watcher:
    """A progress callback that notes each update and when it came."""

    def __init__(self) -> None:
        self.updates: list[ProgressUpdate] = []
        self.times: list[float] = []

    def __call__(self, update: ProgressUpdate) -> None:
        self.updates.append(update)
        self.times.append(time.monotonic())


def test_the_client_is_a_backend_with_sd_features(make_client: MakeClient) -> None:
    client: Backend = make_client()
    assert client.name == "gpu"
    features = client.features
    assert features.kind == "comfyui" and features.previews and features.progress
    assert features.cancel_running and features.sd_options and features.seeds
    spec = client.spec_for(None)
    assert spec.allows_size("768x512") and spec.allows_size("2048x1024")
    assert not spec.allows_size("770x512") and not spec.allows_size("4096x4096")
    assert spec.max_n == 4


async def test_generate_puts_the_members_choices_into_the_workflow(
    comfy: FakeComfyUI, make_client: MakeClient
) -> None:
    result = await make_client().generate(
        GenerateRequest(
            "a fox",
            n=2,
            size="96x64",
            negative_prompt="blur",
            seed=42,
            steps=6,
            guidance=5.5,
            sampler="dpmpp_2m",
            checkpoint="sd_xl_base_1.0",
        )
    )
    assert [(i.mime_type, i.width, i.height) for i in result.images] == [("image/png", 96, 64)] * 2
    assert result.seeds == (42, 42)
    assert result.images[0].data != result.images[1].data
    assert comfy.sent_inputs("imagebot:prompt")["text"] == "a fox"
    assert comfy.sent_inputs("imagebot:negative")["text"] == "blur"
    sampler = comfy.sent_inputs("imagebot:seed")
    assert (sampler["seed"], sampler["steps"], sampler["cfg"]) == (42, 6, 5.5)
    assert sampler["sampler_name"] == "dpmpp_2m"
    assert comfy.sent_inputs("imagebot:size") == {"width": 96, "height": 64, "batch_size": 2}
    assert comfy.sent_inputs("imagebot:checkpoint")["ckpt_name"] == "sd_xl_base_1.0.safetensors"
    assert comfy.prompts[-1]["client_id"]


async def test_a_random_seed_is_reported_and_the_same_seed_paints_the_same_picture(
    make_client: MakeClient,
) -> None:
    client = make_client()
    first = await client.generate(GenerateRequest("a fox", size="64x64"))
    (seed,) = first.seeds
    assert 0 <= seed < 2**32
    again = await client.generate(GenerateRequest("a fox", size="64x64", seed=seed))
    other = await client.generate(GenerateRequest("a fox", size="64x64", seed=seed + 1))
    assert decode_image(again.images[0].data).getpixel((5, 5)) == decode_image(
        first.images[0].data
    ).getpixel((5, 5))
    assert other.images[0].data != first.images[0].data


async def test_progress_and_previews_arrive_before_the_result(
    comfy: FakeComfyUI, make_client: MakeClient
) -> None:
    comfy.step_delay = 0.01
    watcher = Watcher()
    await make_client().generate(
        GenerateRequest("a fox", size="128x128", steps=8), progress=watcher
    )
    answered = time.monotonic()
    steps = [u.step for u in watcher.updates if u.preview is None]
    assert steps == list(range(1, 9))
    assert [u.fraction for u in watcher.updates if u.preview is None][-1] == 1.0
    assert watcher.updates[0].text == "step 1/8"
    previews = [u.preview for u in watcher.updates if u.preview is not None]
    assert len(previews) == 8
    assert decode_image(previews[0]).size == (16, 16)  # latent previews: an eighth of the size
    assert all(t < answered for t in watcher.times)


async def test_without_previews_on_the_server_progress_still_shows(
    comfy: FakeComfyUI, make_client: MakeClient
) -> None:
    comfy.previews = False
    watcher = Watcher()
    await make_client().generate(GenerateRequest("a fox", size="64x64", steps=3), progress=watcher)
    assert [u.step for u in watcher.updates] == [1, 2, 3]
    assert all(u.preview is None for u in watcher.updates)


async def test_a_failing_progress_callback_never_fails_the_job(make_client: MakeClient) -> None:
    def broken(update: ProgressUpdate) -> None:
        raise RuntimeError("the status message is gone")

    result = await make_client().generate(GenerateRequest("a fox", size="64x64"), progress=broken)
    assert len(result.images) == 1


async def test_vary_uploads_the_source_and_runs_img2img_with_its_prompt(
    comfy: FakeComfyUI, make_client: MakeClient
) -> None:
    source = png_bytes(96, 64, (200, 60, 40))
    result = await make_client().vary(VaryRequest(source, n=2, prompt="a red fox"))
    assert [(i.width, i.height) for i in result.images] == [(96, 64)] * 2
    uploaded = comfy.sent_inputs("imagebot:image")["image"]
    assert uploaded.startswith("imagebot/") and uploaded in comfy.uploads
    assert comfy.sent_inputs("imagebot:prompt")["text"] == "a red fox"
    assert comfy.sent_inputs("imagebot:batch")["amount"] == 2
    assert comfy.sent_inputs("imagebot:seed")["denoise"] == 0.6
    # 0.6 of the way from the source to the new colour: the source still shows
    red = decode_image(result.images[0].data).convert("RGB").getpixel((10, 10))
    assert red != (200, 60, 40) and abs(red[0] - 200) < 150


async def test_edit_repaints_only_the_transparent_area(
    comfy: FakeComfyUI, make_client: MakeClient
) -> None:
    image = png_bytes(64, 64, (200, 60, 40))
    mask = png_bytes(64, 64, (0, 0, 0), hole=(0, 0, 31, 63))  # left half transparent
    result = await make_client().edit(EditRequest(image, "a blue sky", mask=mask))
    picture = decode_image(result.images[0].data).convert("RGB")
    assert picture.getpixel((50, 30)) == (200, 60, 40)  # kept exactly
    assert picture.getpixel((10, 30)) != (200, 60, 40)  # repainted
    assert comfy.sent_inputs("imagebot:mask")["channel"] == "red"
    assert (
        comfy.sent_inputs("imagebot:image")["image"] != comfy.sent_inputs("imagebot:mask")["image"]
    )


async def test_edit_without_a_mask_repaints_the_images_own_transparency(
    make_client: MakeClient,
) -> None:
    image = png_bytes(64, 64, (200, 60, 40), hole=(32, 0, 63, 63))
    result = await make_client().edit(EditRequest(image, "a blue sky"))
    picture = decode_image(result.images[0].data).convert("RGB")
    assert picture.getpixel((10, 30)) == (200, 60, 40)
    assert picture.getpixel((50, 30)) != (200, 60, 40)


async def test_the_members_choices_are_checked_against_the_server_before_sending(
    comfy: FakeComfyUI, make_client: MakeClient
) -> None:
    client = make_client(max_steps=30, max_guidance=12.0)
    with pytest.raises(UnknownModel) as unknown:
        await client.generate(GenerateRequest("a fox", checkpoint="dreamshaper_8"))
    assert "v1-5-pruned-emaonly.safetensors" in unknown.value.message
    with pytest.raises(UnsupportedOption) as sampler:
        await client.generate(GenerateRequest("a fox", sampler="Euler a"))
    assert "euler_ancestral" in sampler.value.message
    with pytest.raises(UnsupportedOption):
        await client.generate(GenerateRequest("a fox", steps=31))
    with pytest.raises(UnsupportedOption):
        await client.generate(GenerateRequest("a fox", guidance=12.5))
    with pytest.raises(UnsupportedSize):
        await client.generate(GenerateRequest("a fox", size="100x100"))
    with pytest.raises(TooManyImages):
        await client.generate(GenerateRequest("a fox", n=5))
    with pytest.raises(UnsupportedOption):
        await client.generate(GenerateRequest("a fox", quality="high"))
    assert comfy.prompts == []


async def test_a_checkpoint_added_on_the_server_is_found(
    comfy: FakeComfyUI, make_client: MakeClient
) -> None:
    client = make_client()
    assert await client.option_values("checkpoint") == (
        "v1-5-pruned-emaonly.safetensors",
        "sd_xl_base_1.0.safetensors",
    )
    comfy.checkpoints = (*comfy.checkpoints, "sdxl/juggernaut.safetensors")
    await client.generate(GenerateRequest("a fox", size="64x64", checkpoint="juggernaut"))
    assert comfy.sent_inputs("imagebot:checkpoint")["ckpt_name"] == "sdxl/juggernaut.safetensors"
    assert "euler" in await client.option_values("sampler")


async def test_check_access_names_version_and_checkpoints(make_client: MakeClient) -> None:
    assert await make_client().check_access() == "ComfyUI 0.3.68, 2 checkpoints"


async def test_node_errors_are_an_operator_problem_naming_the_node(
    comfy: FakeComfyUI, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    comfy.checkpoints = ("other.safetensors",)  # the workflow's own checkpoint is gone
    with pytest.raises(OperatorProblem) as refused:
        await make_client().generate(GenerateRequest("a fox", size="64x64"))
    detail = refused.value.detail
    assert "node 4 'imagebot:checkpoint' (CheckpointLoaderSimple)" in detail
    assert "Value not in list" in detail and "v1-5-pruned-emaonly.safetensors" in detail
    assert "node 4" in caplog.text
    assert "not available" in refused.value.message  # the member's text: no workflow details


async def test_a_node_failing_while_it_runs_is_an_outage(
    comfy: FakeComfyUI, make_client: MakeClient
) -> None:
    comfy.fail_node("KSampler", message="Allocation on device")
    with pytest.raises(ProviderUnavailable) as failed:
        await make_client().generate(GenerateRequest("a fox", size="64x64"))
    assert "node 3 (KSampler)" in failed.value.detail
    assert "OutOfMemoryError: Allocation on device" in failed.value.detail


async def test_a_dropped_websocket_falls_back_to_polling_history(
    comfy: FakeComfyUI, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    comfy.step_delay = 0.01
    comfy.drop_websockets_at_step = 2
    watcher = Watcher()
    result = await make_client().generate(
        GenerateRequest("a fox", size="64x64", steps=10), progress=watcher
    )
    assert len(result.images) == 1
    assert max(u.step for u in watcher.updates) == 2  # progress up to the drop, then none
    assert "websocket lost" in caplog.text


async def test_a_server_without_websockets_still_makes_images(
    comfy: FakeComfyUI, make_client: MakeClient
) -> None:
    comfy.accept_websockets = False
    watcher = Watcher()
    result = await make_client().generate(GenerateRequest("a fox", size="64x64"), progress=watcher)
    assert len(result.images) == 1 and watcher.updates == []


async def _start(client: ComfyUIClient, prompt: str = "a fox") -> asyncio.Task[Any]:
    return asyncio.create_task(client.generate(GenerateRequest(prompt, size="64x64", steps=400)))


async def test_cancelling_a_running_prompt_interrupts_it(
    comfy: FakeComfyUI, make_client: MakeClient
) -> None:
    comfy.step_delay = 0.01
    call = await _start(make_client(max_steps=500))
    running = await comfy.wait_running()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert comfy.interrupts == [running]
    await comfy.wait_until(lambda: comfy.running_prompt is None)
    assert comfy.history[running]["status"]["status_str"] == "error"


async def test_cancelling_a_queued_prompt_deletes_it_and_never_interrupts_another(
    comfy: FakeComfyUI, make_client: MakeClient
) -> None:
    comfy.step_delay = 0.01
    someone_else = await _start(make_client(max_steps=500), "someone else's")
    theirs = await comfy.wait_running()
    ours = await _start(make_client(max_steps=500))
    await comfy.wait_until(lambda: bool(comfy.pending_prompts))
    (queued,) = comfy.pending_prompts
    ours.cancel()
    with pytest.raises(asyncio.CancelledError):
        await ours
    assert comfy.deleted == [queued] and comfy.interrupts == []
    assert comfy.running_prompt == theirs
    someone_else.cancel()
    with pytest.raises(asyncio.CancelledError):
        await someone_else


async def test_an_unreachable_server_is_an_outage(
    make_client: MakeClient, sleeps: RecordingSleep
) -> None:
    client = make_client(base_url="http://127.0.0.1:9", max_retries=2)
    with pytest.raises(ProviderUnavailable) as down:
        await client.generate(GenerateRequest("a fox", size="64x64"))
    assert "/prompt" in down.value.detail
    assert len(sleeps.waits) == 2  # a refused connection is tried again, then given up


async def test_a_server_error_is_an_outage(comfy: FakeComfyUI, make_client: MakeClient) -> None:
    comfy.answer_next(502, times=1)  # the proxy in front of it, while ComfyUI restarts
    with pytest.raises(ProviderUnavailable) as down:
        await make_client().generate(GenerateRequest("a fox", size="64x64"))
    assert down.value.status == 502 and comfy.prompts == []


async def test_a_result_that_takes_too_long_is_an_outage_and_is_cancelled(
    comfy: FakeComfyUI, make_client: MakeClient
) -> None:
    comfy.step_delay = 0.05
    client = make_client(timeout_seconds=1, max_steps=500)
    with pytest.raises(ProviderUnavailable) as slow:
        await client.generate(GenerateRequest("a fox", size="64x64", steps=100))
    assert slow.value.possibly_billed and "no result within 1 s" in slow.value.detail
    assert len(comfy.interrupts) == 1


async def test_a_prompt_someone_else_interrupted_is_an_outage_not_a_result(
    comfy: FakeComfyUI, make_client: MakeClient, session: aiohttp.ClientSession
) -> None:
    comfy.step_delay = 0.01
    call = await _start(make_client(max_steps=500))
    await comfy.wait_running()
    async with session.post(f"{comfy.base_url}/interrupt"):  # the web UI's cancel button
        pass
    with pytest.raises(ProviderUnavailable) as stopped:
        await call
    assert "was interrupted on the server at node 3 (KSampler)" in stopped.value.detail


async def test_a_call_cancelled_before_comfyui_answered_still_takes_its_prompt_off(
    comfy: FakeComfyUI, make_client: MakeClient
) -> None:
    """The prompt carries our own prompt_id, so the cancel knows it without the answer."""
    comfy.step_delay = 0.01
    call = await _start(make_client(max_steps=500))
    await comfy.wait_until(lambda: bool(comfy.prompts))
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    ours = comfy.prompts[0]["prompt_id"]
    await comfy.wait_until(lambda: ours in comfy.history or ours in comfy.deleted)
    assert comfy.interrupts == [ours] or comfy.deleted == [ours]


async def test_a_prompt_someone_deleted_from_the_queue_fails_at_once_not_at_the_timeout(
    comfy: FakeComfyUI, make_client: MakeClient, session: aiohttp.ClientSession
) -> None:
    comfy.step_delay = 0.01
    someone_else = await _start(make_client(max_steps=500), "someone else's")
    await comfy.wait_running()
    ours = await _start(make_client(max_steps=500))
    await comfy.wait_until(lambda: bool(comfy.pending_prompts))
    async with session.post(f"{comfy.base_url}/queue", json={"clear": True}):  # the web UI
        pass
    with pytest.raises(ProviderUnavailable) as gone:
        async with asyncio.timeout(2):  # the other prompt runs for 4 s
            await ours
    assert "left the queue without a result" in gone.value.detail
    someone_else.cancel()
    with pytest.raises(asyncio.CancelledError):
        await someone_else
