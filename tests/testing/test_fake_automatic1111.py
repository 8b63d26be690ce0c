"""The fake AUTOMATIC1111 itself: it must do what the real server's source does, quirks included,
or the client's tests against it prove little."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from PIL import Image

from bot.testing.automatic1111 import FakeAutomatic1111
from bot.testing.images import bw_mask_bytes, png_bytes

RED = (200, 60, 40)


@pytest.fixture
async def a1111() -> AsyncIterator[FakeAutomatic1111]:
    async with FakeAutomatic1111() as fake:
        yield fake


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(
    session: aiohttp.ClientSession,
    fake: FakeAutomatic1111,
    method: str,
    path: str,
    body: Any = None,
    **kwargs: Any,
) -> tuple[int, Any]:
    async with session.request(method, fake.base_url + path, json=body, **kwargs) as response:
        return response.status, await response.json()


def picture(encoded: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(encoded)))
    image.load()
    assert image.format == "PNG"
    return image


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_txt2img_answers_png_images_with_the_seeds_in_an_info_string(
    a1111: FakeAutomatic1111, session: aiohttp.ClientSession
) -> None:
    body = {"prompt": "a fox", "width": 96, "height": 64, "batch_size": 2, "n_iter": 2, "steps": 3}
    status, answer = await call(session, a1111, "POST", "/sdapi/v1/txt2img", body)
    assert status == 200
    assert [picture(i).size for i in answer["images"]] == [(96, 64)] * 4
    assert isinstance(answer["info"], str)
    info = json.loads(answer["info"])
    seed = info["seed"]
    assert 0 <= seed < 4294967294 and info["all_seeds"] == [seed, seed + 1, seed + 2, seed + 3]
    assert answer["parameters"]["prompt"] == "a fox"

    again = await call(session, a1111, "POST", "/sdapi/v1/txt2img", {**body, "seed": seed})
    assert json.loads(again[1]["info"])["all_seeds"] == info["all_seeds"]
    same = [picture(i).getpixel((0, 0)) for i in again[1]["images"]]
    assert same == [picture(i).getpixel((0, 0)) for i in answer["images"]]


async def test_sizes_are_floored_to_the_latent_grid(
    a1111: FakeAutomatic1111, session: aiohttp.ClientSession
) -> None:
    _, answer = await call(
        session, a1111, "POST", "/sdapi/v1/txt2img", {"width": 100, "height": 71, "steps": 1}
    )
    assert picture(answer["images"][0]).size == (96, 64)


async def test_a_mistyped_field_is_fastapis_422_and_an_unknown_one_is_ignored(
    a1111: FakeAutomatic1111, session: aiohttp.ClientSession
) -> None:
    body = {"prompt": "x", "steps": "many", "cfg_scale": [1], "styles": ["ok", {}]}
    status, answer = await call(session, a1111, "POST", "/sdapi/v1/txt2img", body)
    assert status == 422
    assert answer == {
        "detail": [
            {"loc": ["body", "styles", 1], "msg": "str type expected", "type": "type_error.str"},
            {
                "loc": ["body", "steps"],
                "msg": "value is not a valid integer",
                "type": "type_error.integer",
            },
            {
                "loc": ["body", "cfg_scale"],
                "msg": "value is not a valid float",
                "type": "type_error.float",
            },
        ]
    }
    assert a1111.runs == []

    # pydantic v1 coerces ("20" is an integer) and ignores what it does not know
    status, _ = await call(
        session, a1111, "POST", "/sdapi/v1/txt2img", {"steps": "2", "guidance": 3, "n": 2}
    )
    assert status == 200
    assert a1111.ignored_fields == ["guidance", "n"]
    assert len(a1111.runs) == 1


async def test_one_generation_at_a_time(
    a1111: FakeAutomatic1111, session: aiohttp.ClientSession
) -> None:
    a1111.step_delay = 0.01
    first = asyncio.create_task(
        call(session, a1111, "POST", "/sdapi/v1/txt2img", {"steps": 50, "force_task_id": "a"})
    )
    await a1111.wait_running("a")
    second = asyncio.create_task(
        call(session, a1111, "POST", "/sdapi/v1/txt2img", {"steps": 2, "force_task_id": "b"})
    )
    await asyncio.sleep(0.03)
    assert a1111.running_task == "a"
    assert [s for s, _ in await asyncio.gather(first, second)] == [200, 200]
    a, b = a1111.runs
    assert (a.task_id, b.task_id) == ("a", "b")
    assert b.started >= a.finished


async def test_progress_on_a_second_connection_with_a_preview_every_n_steps(
    a1111: FakeAutomatic1111, session: aiohttp.ClientSession
) -> None:
    a1111.step_delay = 0.05
    idle = (await call(session, a1111, "GET", "/sdapi/v1/progress"))[1]
    assert idle["progress"] == 0 and idle["current_image"] is None

    body = {"steps": 20, "width": 64, "height": 64, "force_task_id": "mine"}
    job = asyncio.create_task(call(session, a1111, "POST", "/sdapi/v1/txt2img", body))
    await a1111.wait_running("mine", step=3)
    early = (await call(session, a1111, "GET", "/sdapi/v1/progress"))[1]
    assert "current_task" not in early  # whose job it is, only /internal/progress says
    assert 0 < early["progress"] < 0.5
    assert early["state"]["sampling_steps"] == 20 and early["state"]["job_count"] == 1
    assert early["current_image"] is None  # fewer than show_progress_every_n_steps (10) yet
    await a1111.wait_running("mine", step=11)
    later = (await call(session, a1111, "GET", "/sdapi/v1/progress"))[1]
    assert later["progress"] > early["progress"]
    assert later["eta_relative"] >= 0
    assert picture(later["current_image"]).size == (64, 64)
    skipped = await call(session, a1111, "GET", "/sdapi/v1/progress?skip_current_image=true")
    assert skipped[1]["current_image"] is None
    await job


async def test_interrupt_stops_whatever_runs_and_it_answers_with_what_it_has(
    a1111: FakeAutomatic1111, session: aiohttp.ClientSession
) -> None:
    a1111.step_delay = 0.01
    body = {"steps": 50, "n_iter": 3, "force_task_id": "someone"}
    job = asyncio.create_task(call(session, a1111, "POST", "/sdapi/v1/txt2img", body))
    await a1111.wait_running(step=2)
    assert await call(session, a1111, "POST", "/sdapi/v1/interrupt") == (200, {})
    status, answer = await job
    assert status == 200
    assert len(answer["images"]) == 1  # the batch it was on, half done; the others never ran
    assert len(json.loads(answer["info"])["all_seeds"]) == 3
    assert a1111.interrupts == ["someone"] and a1111.runs[0].interrupted

    # an interrupt while idle does not carry over to the next job
    await call(session, a1111, "POST", "/sdapi/v1/interrupt")
    status, answer = await call(session, a1111, "POST", "/sdapi/v1/txt2img", {"steps": 2})
    assert len(answer["images"]) == 1 and not a1111.runs[1].interrupted
    assert a1111.interrupts == ["someone", None]


async def test_lists_and_options(a1111: FakeAutomatic1111, session: aiohttp.ClientSession) -> None:
    _, models = await call(session, a1111, "GET", "/sdapi/v1/sd-models")
    assert models[0]["title"] == "v1-5-pruned-emaonly.safetensors [6ce0161689]"
    assert models[0]["model_name"] == "v1-5-pruned-emaonly"
    _, samplers = await call(session, a1111, "GET", "/sdapi/v1/samplers")
    assert samplers[0]["name"] == "DPM++ 2M" and "Euler" in {s["name"] for s in samplers}
    _, options = await call(session, a1111, "GET", "/sdapi/v1/options")
    assert options["show_progress_every_n_steps"] == 10

    assert await call(
        session, a1111, "POST", "/sdapi/v1/options", {"show_progress_every_n_steps": 2}
    ) == (200, None)
    assert a1111.options["show_progress_every_n_steps"] == 2
    status, error = await call(
        session, a1111, "POST", "/sdapi/v1/options", {"sd_model_checkpoint": "nope"}
    )
    assert status == 500
    assert error == {
        "error": "RuntimeError",
        "detail": "",
        "body": "",
        "errors": "model 'nope' not found",
    }


async def test_api_auth_is_basic_auth_with_the_web_uis_401() -> None:
    async with FakeAutomatic1111(auth=("bot", "s3cret")) as fake, aiohttp.ClientSession() as s:
        status, body = await call(s, fake, "GET", "/sdapi/v1/sd-models")
        assert (status, body["detail"]) == (401, "Not authenticated")
        wrong = {"Authorization": "Basic " + b64(b"bot:guess")}
        status, body = await call(
            s, fake, "POST", "/sdapi/v1/txt2img", {"steps": "x"}, headers=wrong
        )
        assert status == 401  # checked before the body
        assert body == {
            "error": "HTTPException",
            "detail": "Incorrect username or password",
            "body": "",
            "errors": "",
        }
        right = {"Authorization": "Basic " + b64(b"bot:s3cret")}
        assert (await call(s, fake, "GET", "/sdapi/v1/sd-models", headers=right))[0] == 200


async def _inpaint(
    session: aiohttp.ClientSession, fake: FakeAutomatic1111, mask: bytes, **extra: Any
) -> Image.Image:
    body = {
        "init_images": [b64(png_bytes(64, 64, RED))],
        "mask": b64(mask),
        "width": 64,
        "height": 64,
        "steps": 4,
        "mask_blur": 2,
        "denoising_strength": 1.0,
        **extra,
    }
    status, answer = await call(session, fake, "POST", "/sdapi/v1/img2img", body)
    assert status == 200
    return picture(answer["images"][0]).convert("RGB")


async def test_white_repaints_unless_the_mask_is_inverted(
    a1111: FakeAutomatic1111, session: aiohttp.ClientSession
) -> None:
    white_box = bw_mask_bytes(64, 64, (16, 16, 47, 47))
    result = await _inpaint(session, a1111, white_box)
    assert result.getpixel((2, 2)) == RED and result.getpixel((32, 32)) != RED
    inverted = await _inpaint(session, a1111, white_box, inpainting_mask_invert=1)
    assert inverted.getpixel((2, 2)) != RED and inverted.getpixel((32, 32)) == RED


async def test_an_alpha_mask_repaints_where_it_is_opaque(
    a1111: FakeAutomatic1111, session: aiohttp.ClientSession
) -> None:
    # our own convention (transparent = repaint) sent as is repaints everything else
    ours = png_bytes(64, 64, (0, 0, 0), hole=(16, 16, 47, 47))
    result = await _inpaint(session, a1111, ours)
    assert result.getpixel((2, 2)) != RED and result.getpixel((32, 32)) == RED


async def test_unknown_samplers_and_checkpoints_are_silently_replaced(
    a1111: FakeAutomatic1111, session: aiohttp.ClientSession
) -> None:
    for asked, used in [("euler", "DPM++ 2M"), ("Euler", "Euler"), ("Euler Karras", "Euler")]:
        _, answer = await call(
            session, a1111, "POST", "/sdapi/v1/txt2img", {"steps": 1, "sampler_name": asked}
        )
        assert json.loads(answer["info"])["sampler_name"] == used
    xl = "sd_xl_base_1.0.safetensors [31e35c80fc]"
    for asked, used in [("no-such-model", "v1-5-pruned-emaonly"), (xl, "sd_xl_base_1.0")]:
        body = {"steps": 1, "override_settings": {"sd_model_checkpoint": asked}}
        status, answer = await call(session, a1111, "POST", "/sdapi/v1/txt2img", body)
        assert status == 200
        assert json.loads(answer["info"])["sd_model_name"] == used


async def test_img2img_needs_decodable_init_images(
    a1111: FakeAutomatic1111, session: aiohttp.ClientSession
) -> None:
    status, body = await call(session, a1111, "POST", "/sdapi/v1/img2img", {"prompt": "x"})
    assert (status, body["detail"]) == (404, "Init image not found")
    status, body = await call(
        session, a1111, "POST", "/sdapi/v1/img2img", {"init_images": ["bm90IGFuIGltYWdl"]}
    )
    assert (status, body["detail"]) == (500, "Invalid encoded image")


async def test_scripted_crash_answers_in_the_web_uis_error_shape(
    a1111: FakeAutomatic1111, session: aiohttp.ClientSession
) -> None:
    a1111.fail_next(500)
    status, body = await call(session, a1111, "POST", "/sdapi/v1/txt2img", {"steps": 1})
    assert status == 500 and body["error"] == "OutOfMemoryError"
    assert (await call(session, a1111, "POST", "/sdapi/v1/txt2img", {"steps": 1}))[0] == 200


async def test_internal_progress_tells_one_tasks_state_and_its_own_preview() -> None:
    async with FakeAutomatic1111(auth=("bot", "pw"), step_delay=0.01) as fake:
        fake.options["show_progress_every_n_steps"] = 2
        headers = {"Authorization": "Basic " + b64(b"bot:pw")}
        async with aiohttp.ClientSession(headers=headers) as s, aiohttp.ClientSession() as anon:

            async def task(name: str, preview_id: int = -1) -> dict[str, Any]:
                body = {"id_task": name, "id_live_preview": preview_id}
                status, answer = await call(anon, fake, "POST", "/internal/progress", body)
                assert status == 200  # the web UI's own route: no --api-auth
                return dict(answer)

            first = asyncio.create_task(
                call(s, fake, "POST", "/sdapi/v1/txt2img", {"steps": 80, "force_task_id": "a"})
            )
            await fake.wait_running("a", step=4)
            second = asyncio.create_task(
                call(s, fake, "POST", "/sdapi/v1/txt2img", {"steps": 2, "force_task_id": "b"})
            )
            await asyncio.sleep(0.02)
            queued = await task("b")
            assert (queued["active"], queued["queued"], queued["textinfo"]) == (
                False,
                True,
                "In queue: 1/1",
            )
            running = await task("a")
            assert running["active"] and 0 < running["progress"] < 1
            assert running["live_preview"].startswith("data:image/png;base64,")
            again = await task("a", running["id_live_preview"])
            assert (
                again["live_preview"] is None
                or again["id_live_preview"] > running["id_live_preview"]
            )
            await asyncio.gather(first, second)
            done = await task("a")
            assert (done["active"], done["completed"]) == (False, True)
            assert (await task("never"))["textinfo"] == "Waiting..."
