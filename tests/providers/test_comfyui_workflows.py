"""ComfyUI workflows: the shipped ones, an operator's folder, and the ones refused at start."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.config import ProviderSettings, Settings
from bot.errors import ConfigError
from bot.imaging import ImageWorker
from bot.imaging.backend_masks import white_repaints
from bot.providers import GenerateRequest, OperatorProblem, VaryRequest
from bot.providers.comfyui import ComfyUIClient
from bot.providers.comfyui_mapping import load_workflows
from bot.providers.registry import check_backends
from bot.testing.comfyui import FakeComfyUI
from bot.testing.images import png_bytes

SHIPPED = Path(__file__).parents[2] / "bot" / "providers" / "comfyui_workflows"


def shipped(name: str) -> dict[str, Any]:
    graph: dict[str, Any] = json.loads((SHIPPED / f"{name}.json").read_text())
    return graph


def write(folder: Path, name: str, graph: Any) -> None:
    (folder / f"{name}.json").write_text(json.dumps(graph))


def test_the_shipped_workflows_serve_each_operation() -> None:
    workflows = load_workflows()
    assert {op: w.name for op, w in workflows.items()} == {
        "generate": "txt2img",
        "vary": "img2img",
        "edit": "inpaint",
        "upscale": "upscale",
    }
    edit = workflows["edit"]
    assert edit.nodes["mask"] != edit.nodes["image"]
    assert edit.graph[edit.nodes["mask"]]["class_type"] == "LoadImageMask"
    classes = {node["class_type"] for w in workflows.values() for node in w.graph.values()}
    assert {"CheckpointLoaderSimple", "CLIPTextEncode", "EmptyLatentImage", "KSampler"} <= classes
    assert {"VAEDecode", "VAEEncode", "SetLatentNoiseMask", "LoadImage", "SaveImage"} <= classes
    assert {"UpscaleModelLoader", "ImageUpscaleWithModel"} <= classes
    upscale = workflows["upscale"]
    assert upscale.graph[upscale.nodes["upscaler"]]["class_type"] == "UpscaleModelLoader"


def test_the_shipped_workflows_are_package_data() -> None:
    pyproject = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert '"providers/comfyui_workflows/*.json"' in pyproject


def test_an_operators_file_replaces_the_shipped_one_of_the_same_name(tmp_path: Path) -> None:
    mine = shipped("txt2img")
    mine["3"]["inputs"]["scheduler"] = "karras"
    write(tmp_path, "txt2img", mine)
    workflows = load_workflows(str(tmp_path))
    assert workflows["generate"].source == str(tmp_path / "txt2img.json")
    assert workflows["generate"].graph["3"]["inputs"]["scheduler"] == "karras"
    assert workflows["vary"].source == "(shipped) img2img.json"


def test_a_map_file_can_name_the_nodes_instead_of_titles(tmp_path: Path) -> None:
    graph = shipped("txt2img")
    for node in graph.values():
        node["_meta"] = {"title": node["class_type"]}
    write(tmp_path, "txt2img", graph)
    mapping = {"prompt": "6", "negative": "7", "seed": "3", "size": "5", "output": "9"}
    (tmp_path / "txt2img.map.json").write_text(json.dumps(mapping))
    assert load_workflows(str(tmp_path))["generate"].nodes == mapping


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda g: g["3"].pop("_meta"), "no node titled 'imagebot:seed' (the KSampler"),
        (
            lambda g: g["5"]["inputs"].pop("width"),
            "node 5 'imagebot:size' (EmptyLatentImage) has no input 'width'",
        ),
        (
            lambda g: g["8"]["inputs"].update(samples=["99", 0]),
            "node 8 input samples links to missing node 99",
        ),
        (
            lambda g: g["7"].update(_meta={"title": "imagebot:prompt"}),
            "nodes 6 and 7 are both titled 'imagebot:prompt'",
        ),
        (
            lambda g: g["7"].update(_meta={"title": "imagebot:negativ"}),
            "node 7 has the unknown title 'imagebot:negativ'",
        ),
    ],
)
def test_a_workflow_that_cannot_be_mapped_is_refused_naming_file_and_node(
    tmp_path: Path, change: Any, named: str
) -> None:
    graph = shipped("txt2img")
    change(graph)
    write(tmp_path, "txt2img", graph)
    with pytest.raises(ConfigError) as refused:
        load_workflows(str(tmp_path))
    assert str(tmp_path / "txt2img.json") in str(refused.value)
    assert named in str(refused.value)


def test_a_mask_node_that_is_not_a_load_image_mask_is_refused(tmp_path: Path) -> None:
    graph = shipped("inpaint")
    graph["13"] = {
        "class_type": "LoadImage",
        "inputs": {"image": "x.png", "channel": "alpha"},
        "_meta": {"title": "imagebot:mask"},
    }
    write(tmp_path, "inpaint", graph)
    with pytest.raises(ConfigError, match="node 13 'imagebot:mask' is a LoadImage; it must be"):
        load_workflows(str(tmp_path))


def test_a_workflow_saved_in_the_ui_format_is_refused_with_the_way_to_export_it(
    tmp_path: Path,
) -> None:
    write(tmp_path, "img2img", {"nodes": [], "links": [], "version": 0.4})
    with pytest.raises(ConfigError, match="Save \\(API Format\\)"):
        load_workflows(str(tmp_path))


def test_a_missing_workflows_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a folder"):
        load_workflows(str(tmp_path / "nope"))


async def test_the_client_refuses_to_start_on_an_unmappable_workflow(tmp_path: Path) -> None:
    graph = shipped("inpaint")
    del graph["13"]["_meta"]
    write(tmp_path, "inpaint", graph)
    async with aiohttp.ClientSession() as session, ImageWorker() as images:
        with pytest.raises(ConfigError, match="no node titled 'imagebot:mask'"):
            ComfyUIClient(
                session,
                ProviderSettings(
                    type="comfyui", base_url="http://127.0.0.1:8188", workflows=str(tmp_path)
                ),
                name="default",
                verify=images.verify_results,
                convert_mask=lambda mask: images.run(white_repaints, mask),
            )


async def test_an_operators_workflow_runs_and_check_finds_nodes_the_server_lacks(
    tmp_path: Path,
) -> None:
    graph = shipped("txt2img")
    graph["3"]["inputs"]["scheduler"] = "karras"
    write(tmp_path, "txt2img", graph)
    upscaled = shipped("img2img")
    upscaled["20"] = {"class_type": "UltimateSDUpscale", "inputs": {"image": ["8", 0]}}
    write(tmp_path, "img2img", upscaled)
    async with FakeComfyUI() as comfy, aiohttp.ClientSession() as session, ImageWorker() as images:
        client = ComfyUIClient(
            session,
            ProviderSettings(type="comfyui", base_url=comfy.base_url, workflows=str(tmp_path)),
            name="default",
            verify=images.verify_results,
            convert_mask=lambda mask: images.run(white_repaints, mask),
        )
        await client.generate(GenerateRequest("a fox", size="64x64"))
        assert comfy.prompts[0]["prompt"]["3"]["inputs"]["scheduler"] == "karras"
        with pytest.raises(OperatorProblem) as missing:
            await client.check_access()
        with pytest.raises(OperatorProblem) as refused:
            await client.vary(VaryRequest(png_bytes(64, 64), prompt="a fox"))
    assert "node 20 is a UltimateSDUpscale" in missing.value.detail
    assert "node UltimateSDUpscale does not exist.: Node ID '#20'" in refused.value.detail


def test_the_start_checks_refuse_a_named_backends_unmappable_workflow(tmp_path: Path) -> None:
    graph = shipped("img2img")
    graph["10"]["_meta"]["title"] = "Load Image"
    write(tmp_path, "img2img", graph)
    gpu = ProviderSettings(type="comfyui", base_url="http://gpu:8188", workflows=str(tmp_path))
    with pytest.raises(ConfigError) as refused:
        check_backends(Settings(backends={"gpu": gpu}))
    assert f"{tmp_path / 'img2img.json'}: no node titled 'imagebot:image'" in str(refused.value)
