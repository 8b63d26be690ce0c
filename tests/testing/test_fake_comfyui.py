"""The fake ComfyUI answers as ComfyUI's own source does: what a client can rely on."""

from __future__ import annotations

import json
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.testing.comfyui import FakeComfyUI

WORKFLOWS = Path(__file__).parents[2] / "bot" / "providers" / "comfyui_workflows"


def txt2img(**changes: Any) -> dict[str, Any]:
    graph: dict[str, Any] = json.loads((WORKFLOWS / "txt2img.json").read_text())
    graph["5"]["inputs"].update(width=64, height=64)
    graph["3"]["inputs"].update(steps=3, seed=changes.pop("seed", 1))
    for node_id, inputs in changes.items():
        graph[node_id]["inputs"].update(inputs)
    return graph


@pytest.fixture
async def comfy() -> AsyncIterator[FakeComfyUI]:
    async with FakeComfyUI(step_delay=0.002) as fake:
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def submit(
    http: aiohttp.ClientSession, comfy: FakeComfyUI, graph: Any, **extra: Any
) -> tuple[int, dict[str, Any]]:
    body = {"prompt": graph, **extra}
    async with http.post(f"{comfy.base_url}/prompt", json=body) as response:
        return response.status, await response.json()


async def test_an_unknown_node_type_refuses_the_whole_prompt(
    http: aiohttp.ClientSession, comfy: FakeComfyUI
) -> None:
    graph = txt2img()
    graph["3"]["class_type"] = "KSamplerTurbo"
    status, answer = await submit(http, comfy, graph)
    assert status == 400 and answer["node_errors"] == {}
    assert answer["error"]["type"] == "invalid_prompt"
    assert answer["error"]["message"] == "Cannot execute because node KSamplerTurbo does not exist."
    assert answer["error"]["details"] == "Node ID '#3'"


@pytest.mark.parametrize(
    ("node_id", "inputs", "kind", "message", "details"),
    [
        ("3", {"steps": 0}, "value_smaller_than_min", "Value 0 smaller than min of 1", "steps"),
        ("3", {"cfg": 101}, "value_bigger_than_max", "Value 101.0 bigger than max of 100.0", "cfg"),
        (
            "3",
            {"sampler_name": "Euler a"},
            "value_not_in_list",
            "Value not in list",
            "sampler_name: 'Euler a' not in ['euler', 'euler_ancestral', 'heun', 'dpm_2', "
            "'dpm_2_ancestral', 'lms', 'dpmpp_2m', 'dpmpp_sde', 'dpmpp_2m_sde', 'ddim', 'uni_pc']",
        ),
        (
            "8",
            {"samples": ["3"]},
            "bad_linked_input",
            "Bad linked input, must be a length-2 list of [node_id, slot_index]",
            "samples",
        ),
        (
            "8",
            {"vae": ["4", 1]},
            "return_type_mismatch",
            "Return type mismatch between linked nodes",
            "vae, received_type(CLIP) mismatch input_type(VAE)",
        ),
        (
            "5",
            {"width": "wide"},
            "invalid_input_type",
            "Failed to convert an input value to a INT value",
            "width, wide, invalid literal for int() with base 10: 'wide'",
        ),
    ],
)
async def test_bad_inputs_are_node_errors_shaped_as_validate_prompt_builds_them(
    http: aiohttp.ClientSession,
    comfy: FakeComfyUI,
    node_id: str,
    inputs: dict[str, Any],
    kind: str,
    message: str,
    details: str,
) -> None:
    status, answer = await submit(http, comfy, txt2img(**{node_id: inputs}))
    assert status == 400
    assert answer["error"]["type"] == "prompt_outputs_failed_validation"
    # ComfyUI lists only the output node's own reasons there: none when a node upstream failed
    assert answer["error"]["details"] == ""
    assert list(answer["node_errors"]) == [node_id]
    entry = answer["node_errors"][node_id]
    assert entry["dependent_outputs"] == ["9"]
    (reason,) = entry["errors"]
    assert (reason["type"], reason["message"], reason["details"]) == (kind, message, details)


async def test_a_missing_required_input_and_a_missing_upload(
    http: aiohttp.ClientSession, comfy: FakeComfyUI
) -> None:
    graph = txt2img()
    del graph["6"]["inputs"]["clip"]
    status, answer = await submit(http, comfy, graph)
    assert status == 400
    reason = answer["node_errors"]["6"]["errors"][0]
    assert reason["type"] == "required_input_missing" and reason["details"] == "clip"
    img2img = json.loads((WORKFLOWS / "img2img.json").read_text())
    img2img["10"]["inputs"]["image"] = "imagebot/nowhere.png"
    status, answer = await submit(http, comfy, img2img)
    reason = answer["node_errors"]["10"]["errors"][0]
    assert reason["type"] == "custom_validation_failed"
    assert reason["details"] == "image - Invalid image file: imagebot/nowhere.png"


async def test_a_prompt_without_an_output_node_is_refused(
    http: aiohttp.ClientSession, comfy: FakeComfyUI
) -> None:
    graph = txt2img()
    del graph["9"]
    status, answer = await submit(http, comfy, graph)
    assert status == 400 and answer["error"]["type"] == "prompt_no_outputs"


async def messages_until_done(socket: aiohttp.ClientWebSocketResponse) -> list[Any]:
    seen: list[Any] = []
    async for message in socket:
        if message.type == aiohttp.WSMsgType.BINARY:
            seen.append(message.data)
            continue
        event = json.loads(message.data)
        seen.append(event)
        if event["type"] == "executing" and event["data"]["node"] is None:
            return seen
    raise AssertionError("the socket closed before the prompt was done")


async def test_the_websocket_tells_a_prompt_as_comfyui_does(
    http: aiohttp.ClientSession, comfy: FakeComfyUI
) -> None:
    async with http.ws_connect(f"{comfy.base_url}/ws?clientId=me") as socket:
        status, answer = await submit(http, comfy, txt2img(), client_id="me", prompt_id="p-1")
        assert status == 200 and answer["prompt_id"] == "p-1" and answer["node_errors"] == {}
        seen = await messages_until_done(socket)
    frames = [item for item in seen if isinstance(item, bytes)]
    events = [item for item in seen if isinstance(item, dict)]
    assert events[0] == {
        "type": "status",
        "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "me"},
    }
    kinds = [e["type"] for e in events if e["type"] != "status"]
    assert kinds[:2] == ["execution_start", "execution_cached"]
    assert kinds[-2:] == ["execution_success", "executing"]
    executing = [e["data"]["node"] for e in events if e["type"] == "executing"]
    assert executing == ["4", "6", "7", "5", "3", "8", "9", None]
    progress = [e["data"] for e in events if e["type"] == "progress"]
    assert progress[0] == {"value": 1, "max": 3, "prompt_id": "p-1", "node": "3"}
    assert len(frames) == 3
    assert struct.unpack(">II", frames[0][:8]) == (1, 1) and frames[0][8:10] == b"\xff\xd8"
    (executed,) = [e["data"] for e in events if e["type"] == "executed"]
    assert executed["node"] == "9"
    image = executed["output"]["images"][0]
    assert comfy.history["p-1"]["outputs"]["9"]["images"] == [image]
    assert comfy.history["p-1"]["status"]["status_str"] == "success"
    query = {k: image[k] for k in ("filename", "subfolder", "type")}
    async with http.get(f"{comfy.base_url}/view", params=query) as response:
        assert response.status == 200 and (await response.read())[:4] == b"\x89PNG"


async def test_the_same_prompt_again_is_cached_and_still_has_its_images(
    http: aiohttp.ClientSession, comfy: FakeComfyUI
) -> None:
    async with http.ws_connect(f"{comfy.base_url}/ws?clientId=me") as socket:
        await submit(http, comfy, txt2img(), client_id="me", prompt_id="first")
        await messages_until_done(socket)
        await submit(http, comfy, txt2img(), client_id="me", prompt_id="again")
        seen = await messages_until_done(socket)
    (cached,) = [e["data"]["nodes"] for e in seen if e["type"] == "execution_cached"]
    assert cached == ["4", "6", "7", "5", "3", "8", "9"]
    assert not [e for e in seen if isinstance(e, bytes) or e["type"] == "progress"]
    first, again = comfy.history["first"]["outputs"], comfy.history["again"]["outputs"]
    assert again == first


async def test_uploads_are_renamed_unless_overwritten_and_view_checks_names(
    http: aiohttp.ClientSession, comfy: FakeComfyUI
) -> None:
    async def upload(overwrite: bool) -> dict[str, Any]:
        form = aiohttp.FormData()
        form.add_field("image", b"\x89PNG...", filename="x.png", content_type="image/png")
        form.add_field("subfolder", "bot")
        if overwrite:
            form.add_field("overwrite", "true")
        async with http.post(f"{comfy.base_url}/upload/image", data=form) as response:
            answer: dict[str, Any] = await response.json()
            return answer

    assert await upload(False) == {"name": "x.png", "subfolder": "bot", "type": "input"}
    assert (await upload(False))["name"] == "x (1).png"
    assert (await upload(True))["name"] == "x.png"
    view = f"{comfy.base_url}/view"
    async with http.get(
        view, params={"filename": "x.png", "subfolder": "bot", "type": "input"}
    ) as r:
        assert r.status == 200
    async with http.get(view, params={"filename": "gone.png"}) as r:
        assert r.status == 404
    async with http.get(view, params={"filename": "../secrets.png"}) as r:
        assert r.status == 400


async def test_one_prompt_runs_at_a_time_and_the_queue_can_be_thinned(
    http: aiohttp.ClientSession, comfy: FakeComfyUI
) -> None:
    comfy.step_delay = 0.02
    slow = txt2img(**{"3": {"steps": 200}})
    await submit(http, comfy, slow, prompt_id="running")
    await comfy.wait_running("running")
    await submit(http, comfy, txt2img(seed=2), prompt_id="waiting")
    async with http.get(f"{comfy.base_url}/queue") as response:
        queue = await response.json()
    assert [item[1] for item in queue["queue_running"]] == ["running"]
    assert [item[1] for item in queue["queue_pending"]] == ["waiting"]
    async with http.post(f"{comfy.base_url}/queue", json={"delete": ["waiting"]}):
        pass
    assert comfy.pending_prompts == [] and comfy.deleted == ["waiting"]
    async with http.post(f"{comfy.base_url}/interrupt", json={"prompt_id": "waiting"}):
        pass
    assert comfy.interrupts == [] and comfy.running_prompt == "running"
    async with http.post(f"{comfy.base_url}/interrupt", json={"prompt_id": "running"}):
        pass
    await comfy.wait_until(lambda: "running" in comfy.history)
    assert comfy.interrupts == ["running"]
    kinds = [m[0] for m in comfy.history["running"]["status"]["messages"]]
    assert kinds[-1] == "execution_interrupted"


async def test_an_interrupt_with_nothing_running_stops_the_next_prompt(
    http: aiohttp.ClientSession, comfy: FakeComfyUI
) -> None:
    """The real flag stays up until a node checks it: why a client must not interrupt blindly."""
    async with http.post(f"{comfy.base_url}/interrupt"):
        pass
    assert comfy.interrupts == [None]
    await submit(http, comfy, txt2img(), prompt_id="innocent")
    await comfy.wait_until(lambda: "innocent" in comfy.history)
    assert comfy.history["innocent"]["status"]["status_str"] == "error"


async def test_object_info_lists_the_nodes_and_choices_and_system_stats_the_version(
    http: aiohttp.ClientSession, comfy: FakeComfyUI
) -> None:
    async with http.get(f"{comfy.base_url}/object_info") as response:
        info = await response.json()
    for name in ("txt2img", "img2img", "inpaint"):
        graph = json.loads((WORKFLOWS / f"{name}.json").read_text())
        assert {node["class_type"] for node in graph.values()} <= set(info)
    checkpoint = info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"]
    assert checkpoint[0] == list(comfy.checkpoints)
    assert info["SaveImage"]["output_node"] is True
    async with http.get(f"{comfy.base_url}/object_info/KSampler") as response:
        assert list(await response.json()) == ["KSampler"]
    async with http.get(f"{comfy.base_url}/system_stats") as response:
        stats = await response.json()
    assert stats["system"]["comfyui_version"] == "0.3.68" and stats["devices"]


async def test_a_failing_node_is_an_execution_error(
    http: aiohttp.ClientSession, comfy: FakeComfyUI
) -> None:
    comfy.fail_node("VAEDecode", exception_type="RuntimeError", message="boom")
    async with http.ws_connect(f"{comfy.base_url}/ws?clientId=me") as socket:
        await submit(http, comfy, txt2img(), client_id="me", prompt_id="p")
        seen = await messages_until_done(socket)
    (error,) = [e["data"] for e in seen if isinstance(e, dict) and e["type"] == "execution_error"]
    assert (error["node_id"], error["node_type"]) == ("8", "VAEDecode")
    assert (error["exception_type"], error["exception_message"]) == ("RuntimeError", "boom")
    assert comfy.history["p"]["status"]["status_str"] == "error"
