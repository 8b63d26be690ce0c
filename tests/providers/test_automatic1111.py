"""The AUTOMATIC1111 client against the fake server: what an operator and a member would notice."""

from __future__ import annotations

import asyncio
import dataclasses
import json
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
    InvalidRequest,
    MalformedResponse,
    OperatorProblem,
    ProviderUnavailable,
    UnknownModel,
    UnsupportedOption,
    UnsupportedSize,
    VaryRequest,
)
from bot.providers.automatic1111 import VARY_DENOISING, Automatic1111Client
from bot.providers.progress import ProgressUpdate
from bot.testing.automatic1111 import FakeAutomatic1111
from bot.testing.images import decode_image, png_bytes
from tests.providers.conftest import RecordingSleep

RED = (200, 60, 40)
MakeClient = Callable[..., Automatic1111Client]
SETTINGS_KEYS = {field.name for field in dataclasses.fields(ProviderSettings)}


@pytest.fixture
async def a1111() -> AsyncIterator[FakeAutomatic1111]:
    async with FakeAutomatic1111(step_delay=0.002) as fake:
        yield fake


@pytest.fixture
def make_client(
    a1111: FakeAutomatic1111,
    session: aiohttp.ClientSession,
    images: ImageWorker,
    sleeps: RecordingSleep,
) -> MakeClient:
    async def convert_mask(mask: bytes) -> bytes:
        return await images.run(white_repaints, mask)

    def make(**overrides: Any) -> Automatic1111Client:
        """Keys of ProviderSettings go to the settings, the rest to the constructor."""
        settings: dict[str, Any] = {
            "type": "automatic1111",
            "base_url": a1111.base_url,
            "model": "",
            "max_retries": 2,
        }
        values: dict[str, Any] = {
            "verify": images.verify_results,
            "convert_mask": convert_mask,
            "poll_interval": 0.01,
            "steps": 4,
            "sleep": sleeps,
            "random": lambda: 0.5,
        }
        for key, value in overrides.items():
            (settings if key in SETTINGS_KEYS else values)[key] = value
        return Automatic1111Client(session, ProviderSettings(**settings), **values)

    return make


class Watcher:
    """A progress callback that notes each update, and whose job was running at that moment."""

    def __init__(self, fake: FakeAutomatic1111) -> None:
        self.fake = fake
        self.updates: list[ProgressUpdate] = []
        self.running: list[str | None] = []
        self.times: list[float] = []

    async def __call__(self, update: ProgressUpdate) -> None:
        self.updates.append(update)
        self.running.append(self.fake.running_task)
        self.times.append(time.monotonic())


async def test_generate_makes_the_images_asked_for_with_their_seeds(
    a1111: FakeAutomatic1111, make_client: MakeClient
) -> None:
    client = make_client()
    result = await client.generate(
        GenerateRequest("a fox", n=2, size="96x64", seed=42, negative_prompt="blur"),
    )
    assert [(i.mime_type, i.width, i.height) for i in result.images] == [("image/png", 96, 64)] * 2
    assert result.seeds == (42, 43)
    assert result.size == "96x64" and result.model == "v1-5-pruned-emaonly"
    path, body = a1111.requests[0]
    assert path == "/sdapi/v1/txt2img"
    assert body["batch_size"] == 2 and body["negative_prompt"] == "blur" and body["steps"] == 4
    assert body["force_task_id"].startswith("imagebot-")
    assert a1111.ignored_fields == []  # every field we send is one the server reads


async def test_a_random_seed_is_reported_as_used(
    a1111: FakeAutomatic1111, make_client: MakeClient
) -> None:
    result = await make_client().generate(GenerateRequest("a fox"))
    assert result.seeds == tuple(a1111.runs[0].seeds) and result.seeds[0] >= 0


async def test_progress_and_decoded_previews_arrive_before_the_answer(
    a1111: FakeAutomatic1111, make_client: MakeClient
) -> None:
    a1111.step_delay = 0.02
    a1111.options["show_progress_every_n_steps"] = 3
    watcher = Watcher(a1111)
    result = await make_client().generate(
        GenerateRequest("a fox", size="64x64", steps=20), progress=watcher
    )
    answered = time.monotonic()
    assert len(watcher.updates) >= 3
    assert all(t < answered for t in watcher.times)
    fractions = [u.fraction for u in watcher.updates]
    assert fractions == sorted(fractions) and 0 < fractions[-1] <= 1
    assert watcher.updates[-1].steps == 20 and "/20" in watcher.updates[-1].text
    previews = [u.preview for u in watcher.updates if u.preview is not None]
    assert previews, "no preview was passed on"
    assert all(decode_image(p).size == (64, 64) for p in previews)
    assert len(set(previews)) == len(previews)  # an unchanged preview is not sent again
    assert result.images


async def test_no_progress_is_shown_from_someone_elses_job(
    a1111: FakeAutomatic1111, make_client: MakeClient, session: aiohttp.ClientSession
) -> None:
    a1111.step_delay = 0.01
    a1111.options["show_progress_every_n_steps"] = 1
    other = asyncio.create_task(_foreign_job(session, a1111, steps=15))
    await a1111.wait_running("someone-else")
    watcher = Watcher(a1111)
    await make_client().generate(GenerateRequest("mine", steps=15), progress=watcher)
    await other
    theirs = a1111.runs[0]
    assert watcher.updates
    assert "someone-else" not in watcher.running
    assert all(t >= theirs.finished for t in watcher.times)


async def _foreign_job(session: aiohttp.ClientSession, fake: FakeAutomatic1111, steps: int) -> int:
    body = {"prompt": "theirs", "steps": steps, "force_task_id": "someone-else"}
    async with session.post(fake.base_url + "/sdapi/v1/txt2img", json=body) as response:
        await response.read()
        return response.status


async def test_cancelling_our_running_job_interrupts_it(
    a1111: FakeAutomatic1111, make_client: MakeClient
) -> None:
    a1111.step_delay = 0.01
    client = make_client()
    job = asyncio.create_task(client.generate(GenerateRequest("a fox", steps=200), task_id="job-7"))
    await a1111.wait_running("job-7", step=2)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    await _eventually(lambda: a1111.interrupts == ["job-7"])
    await _eventually(lambda: a1111.runs[0].interrupted and a1111.running_task is None)
    await client.aclose()


async def test_someone_elses_job_is_never_interrupted(
    a1111: FakeAutomatic1111, make_client: MakeClient, session: aiohttp.ClientSession
) -> None:
    a1111.step_delay = 0.01
    client = make_client()
    other = asyncio.create_task(_foreign_job(session, a1111, steps=30))
    await a1111.wait_running("someone-else")
    assert await client.cancel("job-8") is False

    ours = asyncio.create_task(client.generate(GenerateRequest("mine"), task_id="job-8"))
    await asyncio.sleep(0.05)  # queued behind the other job
    ours.cancel()
    with pytest.raises(asyncio.CancelledError):
        await ours
    assert await other == 200
    assert not a1111.runs[0].interrupted
    # the server runs our abandoned request anyway; it is stopped as soon as it starts
    await _eventually(lambda: a1111.interrupts == ["job-8"])
    await _eventually(lambda: len(a1111.runs) == 2 and a1111.runs[1].interrupted)
    await client.aclose()


async def _eventually(condition: Callable[[], bool], seconds: float = 3.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.005)


async def test_edit_repaints_only_the_area_our_mask_marks(
    a1111: FakeAutomatic1111, make_client: MakeClient
) -> None:
    image = png_bytes(64, 64, RED)
    mask = png_bytes(64, 64, (0, 0, 0), hole=(16, 16, 47, 47))  # transparent = repaint
    result = await make_client().edit(EditRequest(image, "a window", mask=mask))
    edited = decode_image(result.images[0].data).convert("RGB")
    assert edited.size == (64, 64)
    outside = [(x, y) for x in range(64) for y in range(64) if not 6 <= x <= 57 or not 6 <= y <= 57]
    assert all(edited.getpixel(p) == RED for p in outside)
    assert edited.getpixel((32, 32)) != RED
    body = a1111.requests[0][1]
    assert body["inpainting_mask_invert"] == 0 and body["init_images"]


async def test_edit_without_a_mask_uses_the_images_own_transparency(
    a1111: FakeAutomatic1111, make_client: MakeClient
) -> None:
    image = png_bytes(64, 64, RED, hole=(0, 0, 20, 20))
    result = await make_client().edit(EditRequest(image, "a sun"))
    edited = decode_image(result.images[0].data).convert("RGB")
    assert edited.getpixel((60, 60)) == RED and edited.getpixel((5, 5)) != RED


async def test_vary_redraws_the_source_at_the_documented_strength(
    a1111: FakeAutomatic1111, make_client: MakeClient
) -> None:
    result = await make_client().vary(VaryRequest(png_bytes(96, 72, RED), n=2))
    assert [(i.width, i.height) for i in result.images] == [(96, 72)] * 2
    path, body = a1111.requests[0]
    assert path == "/sdapi/v1/img2img" and body["denoising_strength"] == VARY_DENOISING
    assert "mask" not in body


async def test_checkpoints_and_samplers_come_from_the_server(make_client: MakeClient) -> None:
    client = make_client()
    names = [c.model_name for c in await client.checkpoints()]
    assert names == ["v1-5-pruned-emaonly", "sd_xl_base_1.0"]
    assert {"Euler", "DPM++ 2M"} <= await client.samplers()


async def test_a_chosen_checkpoint_is_used_and_an_unknown_one_refused(
    a1111: FakeAutomatic1111, make_client: MakeClient
) -> None:
    client = make_client()
    result = await client.generate(GenerateRequest("a fox", checkpoint="sd_xl_base_1.0"))
    assert result.model == "sd_xl_base_1.0"
    with pytest.raises(UnknownModel) as caught:
        await client.generate(GenerateRequest("a fox", checkpoint="sdxl-turbo"))
    assert "v1-5-pruned-emaonly" in caught.value.message
    assert len(a1111.runs) == 1  # the server would have used its loaded model instead


async def test_an_unknown_sampler_is_refused_before_the_server_swaps_it(
    a1111: FakeAutomatic1111, make_client: MakeClient
) -> None:
    client = make_client()
    with pytest.raises(UnsupportedOption):
        await client.generate(GenerateRequest("a fox", sampler="euler"))
    await client.generate(GenerateRequest("a fox", sampler="Euler"))
    assert [run.sampler for run in a1111.runs] == ["Euler"]


async def test_sizes_off_the_latent_grid_and_openai_options_are_refused(
    a1111: FakeAutomatic1111, make_client: MakeClient
) -> None:
    client = make_client()
    with pytest.raises(UnsupportedSize):
        await client.generate(GenerateRequest("a fox", size="500x512"))
    with pytest.raises(UnsupportedOption):
        await client.generate(GenerateRequest("a fox", quality="hd"))
    assert a1111.requests == []


async def test_at_most_the_images_asked_for_are_kept(
    a1111: FakeAutomatic1111, make_client: MakeClient
) -> None:
    a1111.extra_images = 2  # an always-on extension appending its own images
    result = await make_client().generate(GenerateRequest("a fox", n=1))
    assert len(result.images) == 1 and len(result.seeds) == 1


async def test_an_answer_over_the_decoded_byte_cap_is_refused(make_client: MakeClient) -> None:
    client = make_client(max_response_mb=0.001)
    with pytest.raises(MalformedResponse) as caught:
        await client.generate(GenerateRequest("a fox", size="256x256"))
    assert "larger than" in caught.value.detail


async def test_a_422_is_an_invalid_request_naming_the_field(make_client: MakeClient) -> None:
    request = GenerateRequest("a fox", steps="many")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest) as caught:
        await make_client().generate(request)
    assert caught.value.param == "steps"
    assert "steps: value is not a valid integer" in caught.value.message


async def test_wrong_credentials_are_the_operators_problem_and_stay_secret(
    session: aiohttp.ClientSession, make_client: MakeClient
) -> None:
    async with FakeAutomatic1111(auth=("bot", "right-password")) as fake:
        client = make_client(base_url=fake.base_url, username="bot", password="wrong-password")
        with pytest.raises(OperatorProblem) as caught:
            await client.generate(GenerateRequest("a fox"))
        assert caught.value.status == 401 and "api-auth" in caught.value.detail
        assert "wrong-password" not in caught.value.detail + str(caught.value)
        good = make_client(base_url=fake.base_url, username="bot", password="right-password")
        assert (await good.generate(GenerateRequest("a fox"))).images


async def test_a_server_that_is_down_is_an_outage_after_the_retries(
    make_client: MakeClient, sleeps: RecordingSleep
) -> None:
    async with FakeAutomatic1111() as gone:
        url = gone.base_url
    client = make_client(base_url=url, max_retries=2)
    with pytest.raises(ProviderUnavailable) as caught:
        await client.generate(GenerateRequest("a fox"))
    assert "txt2img" in caught.value.detail
    assert len(sleeps.waits) == 2


async def test_a_crash_on_the_server_is_an_outage_and_is_not_sent_twice(
    a1111: FakeAutomatic1111, make_client: MakeClient
) -> None:
    a1111.fail_next(500)
    with pytest.raises(ProviderUnavailable) as caught:
        await make_client().generate(GenerateRequest("a fox"))
    assert caught.value.status == 500 and "CUDA out of memory" in caught.value.detail
    assert len(a1111.requests) == 1


async def test_a_job_interrupted_by_someone_else_is_not_delivered_as_finished(
    a1111: FakeAutomatic1111, make_client: MakeClient, session: aiohttp.ClientSession
) -> None:
    a1111.step_delay = 0.01
    job = asyncio.create_task(
        make_client().generate(GenerateRequest("a fox", steps=100), task_id="j")
    )
    await a1111.wait_running("j", step=5)
    await asyncio.sleep(0.05)  # at least one poll saw it running
    async with session.post(a1111.base_url + "/sdapi/v1/interrupt") as response:
        assert json.loads(await response.read()) == {}
    with pytest.raises(ProviderUnavailable) as caught:
        await job
    assert "interrupted on the server" in caught.value.detail


async def test_a_failing_progress_callback_never_fails_the_job(
    a1111: FakeAutomatic1111, make_client: MakeClient
) -> None:
    a1111.step_delay = 0.01
    calls: list[float] = []

    def broken(update: ProgressUpdate) -> None:
        calls.append(update.fraction)
        raise RuntimeError("Discord said no")

    result = await make_client().generate(GenerateRequest("a fox", steps=10), progress=broken)
    assert calls and result.images


async def test_without_the_web_ui_there_is_no_progress_and_no_interrupt(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    async with FakeAutomatic1111(webui=False, step_delay=0.01) as fake:
        client = make_client(base_url=fake.base_url)
        watcher = Watcher(fake)
        job = asyncio.create_task(
            client.generate(
                GenerateRequest("a fox", steps=200),
                progress=watcher,
                task_id="t",
            )
        )
        await fake.wait_running("t", step=3)
        await asyncio.sleep(0.05)
        assert await client.cancel("t") is False  # cannot prove the running job is ours
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        await client.aclose()
        assert watcher.updates == [] and fake.interrupts == []
        assert sum("--nowebui" in r.getMessage() for r in caplog.records) == 1


async def test_a_request_that_timed_out_does_not_leave_its_job_running(
    a1111: FakeAutomatic1111, make_client: MakeClient
) -> None:
    a1111.step_delay = 0.01
    seen: list[tuple[str, str | None]] = []
    client = make_client(
        timeout_seconds=0.3, observe=lambda path, seconds, error: seen.append((path, error))
    )
    with pytest.raises(ProviderUnavailable) as caught:
        await client.generate(GenerateRequest("a fox", steps=500), task_id="slow")
    assert caught.value.possibly_billed
    await _eventually(lambda: a1111.interrupts == ["slow"])
    assert seen == [("/sdapi/v1/txt2img", "provider.unavailable")]
    await client.aclose()
