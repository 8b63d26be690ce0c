"""ComfyUI workflows: which file serves which operation, and where the bot writes into it.

A workflow is a graph in ComfyUI's API format (``Save (API Format)`` in its menu): ``{node_id:
{"class_type", "inputs", "_meta": {"title"}}}``. The bot never guesses from node types, which
an operator's graph may use in any number; it looks for nodes by title:

================== ======================================= ==================================
title              node (typically)                        the bot sets
================== ======================================= ==================================
imagebot:prompt    CLIPTextEncode                          ``text``
imagebot:negative  CLIPTextEncode (optional)               ``text``
imagebot:seed      KSampler / KSamplerAdvanced             ``seed`` (``noise_seed``), and
                                                           ``steps``, ``cfg``, ``sampler_name``
imagebot:size      EmptyLatentImage (txt2img)              ``width``, ``height``, ``batch_size``
imagebot:batch     RepeatLatentBatch (optional)            ``amount``
imagebot:checkpoint CheckpointLoaderSimple (optional)      ``ckpt_name``
imagebot:image     LoadImage (img2img, inpaint)            ``image`` (an uploaded file)
imagebot:mask      LoadImageMask (inpaint)                 ``image``, ``channel`` = "red"
imagebot:upscaler  UpscaleModelLoader (upscale)            ``model_name`` (``provider.upscaler``)
imagebot:output    SaveImage                               nothing: its images are the result
================== ======================================= ==================================

Instead of titles, a file ``NAME.map.json`` beside ``NAME.json`` may name the nodes:
``{"prompt": "6", "seed": "3", ...}`` (role without the ``imagebot:`` prefix -> node id); it
wins over titles. A workflow the bot cannot map is refused when the bot starts, with the file
and the missing node or input named: finding out at a member's first /imagine is too late.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from bot.errors import ConfigError

PREFIX = "imagebot:"
#: The operations' workflow files (``NAME.json``), shipped and overridable by file name.
FILES = {"generate": "txt2img", "vary": "img2img", "edit": "inpaint", "upscale": "upscale"}
#: role -> (inputs the node must have (any one of each tuple), what the node is for).
ROLES: Mapping[str, tuple[tuple[tuple[str, ...], ...], str]] = {
    "prompt": ((("text",),), "the CLIPTextEncode of the prompt"),
    "negative": ((("text",),), "the CLIPTextEncode of the negative prompt"),
    "seed": ((("seed", "noise_seed"),), "the KSampler whose seed the bot sets"),
    "size": ((("width",), ("height",)), "the EmptyLatentImage whose size the bot sets"),
    "batch": ((("amount", "batch_size"),), "the node that sets how many images are made"),
    "checkpoint": ((("ckpt_name",),), "the CheckpointLoaderSimple"),
    "image": ((("image",),), "the LoadImage of the member's picture"),
    "mask": ((("image",), ("channel",)), "the LoadImageMask of the mask"),
    "upscaler": ((("model_name",),), "the UpscaleModelLoader of the upscale model"),
    "output": ((("images",),), "the SaveImage whose images are the result"),
}
REQUIRED = {
    "txt2img": ("prompt", "seed", "size", "output"),
    "img2img": ("prompt", "seed", "image", "output"),
    "inpaint": ("prompt", "seed", "image", "mask", "output"),
    "upscale": ("image", "upscaler", "output"),
}
#: The mask goes up white = repaint on black (``backend_masks.white_repaints``); red reads it.
MASK_CHANNEL = "red"


@dataclass(frozen=True)
class Workflow:
    """One mapped workflow: the graph as the operator wrote it, and role -> node id."""

    name: str
    source: str
    graph: Mapping[str, Any]
    nodes: Mapping[str, str]

    def has(self, role: str) -> bool:
        return role in self.nodes

    def input_names(self, role: str) -> frozenset[str]:
        node = self.graph[self.nodes[role]]
        return frozenset(node["inputs"])

    def fill(self, values: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """A copy of the graph with ``values`` (role -> {input: value}) written in."""
        graph = copy.deepcopy(dict(self.graph))
        for role, inputs in values.items():
            node = graph[self.nodes[role]]
            for name, value in inputs.items():
                node["inputs"][name] = value
        return graph


def load_workflows(folder: str = "") -> dict[str, Workflow]:
    """The workflows by operation (and "upscale"): the operator's ``folder`` files, else the
    shipped ones.

    Raises ConfigError naming the file and what is wrong with it.
    """
    shipped = resources.files("bot.providers").joinpath("comfyui_workflows")
    override = Path(folder).expanduser() if folder else None
    if override is not None and not override.is_dir():
        raise ConfigError(f"provider.workflows: {override} is not a folder")
    workflows: dict[str, Workflow] = {}
    for operation, name in FILES.items():
        path = override / f"{name}.json" if override is not None else None
        if path is not None and path.is_file():
            text = path.read_text(encoding="utf-8")
            mapping_path = path.with_name(f"{name}.map.json")
            mapping = mapping_path.read_text(encoding="utf-8") if mapping_path.is_file() else None
            source = str(path)
        else:
            text = shipped.joinpath(f"{name}.json").read_text(encoding="utf-8")
            mapping, source = None, f"(shipped) {name}.json"
        workflows[operation] = parse_workflow(name, text, source, mapping)
    return workflows


def parse_workflow(name: str, text: str, source: str, mapping: str | None = None) -> Workflow:
    """Check one workflow file and find its nodes; ConfigError when it cannot be used."""

    def refuse(problem: str) -> ConfigError:
        return ConfigError(f"ComfyUI workflow {source}: {problem}")

    try:
        graph = json.loads(text)
    except ValueError as exc:
        raise refuse(f"not JSON ({exc})") from None
    if isinstance(graph, dict) and "nodes" in graph and "links" in graph:
        raise refuse("is in ComfyUI's UI format; export it with 'Save (API Format)'")
    if not isinstance(graph, dict) or not graph:
        raise refuse("is not a graph in ComfyUI's API format")
    for node_id, node in graph.items():
        if not (
            isinstance(node, dict)
            and isinstance(node.get("class_type"), str)
            and isinstance(node.get("inputs"), dict)
        ):
            raise refuse(f"node {node_id} has no class_type and inputs (not the API format)")
        for input_name, value in node["inputs"].items():
            if isinstance(value, list) and len(value) == 2 and str(value[0]) not in graph:
                raise refuse(f"node {node_id} input {input_name} links to missing node {value[0]}")
    nodes = _nodes_by_title(graph, refuse)
    if mapping is not None:
        nodes.update(_nodes_by_map(graph, mapping, refuse))
    for role in REQUIRED[name]:
        if role not in nodes:
            what = ROLES[role][1]
            raise refuse(f"no node titled '{PREFIX}{role}' ({what})")
    for role, node_id in nodes.items():
        node = graph[node_id]
        for choices in ROLES[role][0]:
            if not any(choice in node["inputs"] for choice in choices):
                raise refuse(
                    f"node {node_id} '{PREFIX}{role}' ({node['class_type']}) has no input "
                    f"'{choices[0]}'; it should be {ROLES[role][1]}"
                )
    if "mask" in nodes and graph[nodes["mask"]]["class_type"] != "LoadImageMask":
        node_id = nodes["mask"]
        raise refuse(
            f"node {node_id} '{PREFIX}mask' is a {graph[node_id]['class_type']}; it must be a "
            "LoadImageMask (the bot uploads the mask white = repaint and reads its red channel)"
        )
    return Workflow(name=name, source=source, graph=graph, nodes=nodes)


def _nodes_by_title(graph: Mapping[str, Any], refuse: Any) -> dict[str, str]:
    nodes: dict[str, str] = {}
    for node_id, node in graph.items():
        meta = node.get("_meta")
        title = meta.get("title") if isinstance(meta, dict) else None
        if not isinstance(title, str) or not title.strip().lower().startswith(PREFIX):
            continue
        role = title.strip()[len(PREFIX) :].strip().lower()
        if role not in ROLES:
            known = ", ".join(PREFIX + r for r in ROLES)
            raise refuse(f"node {node_id} has the unknown title '{title}' (known: {known})")
        if role in nodes:
            raise refuse(f"nodes {nodes[role]} and {node_id} are both titled '{PREFIX}{role}'")
        nodes[role] = str(node_id)
    return nodes


def _nodes_by_map(graph: Mapping[str, Any], text: str, refuse: Any) -> dict[str, str]:
    try:
        mapping = json.loads(text)
    except ValueError as exc:
        raise refuse(f"its .map.json is not JSON ({exc})") from None
    if not isinstance(mapping, dict):
        raise refuse("its .map.json is not an object of role -> node id")
    nodes: dict[str, str] = {}
    for role, node_id in mapping.items():
        role = str(role).removeprefix(PREFIX)
        if role not in ROLES:
            raise refuse(f"its .map.json names the unknown role '{role}'")
        if str(node_id) not in graph:
            raise refuse(f"its .map.json maps '{role}' to missing node {node_id}")
        nodes[role] = str(node_id)
    return nodes
