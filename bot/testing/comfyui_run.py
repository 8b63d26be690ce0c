"""How the fake ComfyUI runs a validated graph: node by node, with Pillow instead of a GPU.

The order and the caching are ComfyUI's (``execution.py``): only what the output nodes need
runs, each node after its inputs, and a node whose class and inputs (all the way up) are the
same as in the previous prompt is not run again but listed in ``execution_cached``. Sampling
sleeps ``step_delay`` per step, reports each step and, when previews are on, a small JPEG of
the picture so far. Pictures are solid colours from prompt, seed and batch index; img2img
blends the source by ``denoise``; a noise mask keeps the source outside it, exactly.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from PIL import Image, ImageFilter, ImageOps

from bot.testing.automatic1111_pictures import grain

GREY = (127, 127, 127)


class Interrupted(Exception):
    """``comfy.model_management.InterruptProcessingException``."""


class NodeFailed(Exception):
    def __init__(self, exception_type: str, message: str) -> None:
        super().__init__(message)
        self.exception_type = exception_type


@dataclass(frozen=True)
class Latent:
    """A LATENT: its pixel size, one source picture per batch item (None = empty), a mask."""

    size: tuple[int, int]
    sources: tuple[Image.Image | None, ...]
    mask: Image.Image | None = None


@dataclass
class Hooks:
    """What a running graph tells the server, and asks it."""

    progress: Callable[[str, int, int, bytes | None], Awaitable[None]]
    interrupted: Callable[[], bool]
    files: dict[tuple[str, str, str], bytes]
    step_delay: float = 0.005
    previews: bool = True
    #: Bits of random noise per channel in the finished pictures (0: flat colours, tiny PNGs).
    noise_bits: int = 0
    #: class_type -> (exception type, message) raised when such a node runs.
    failures: dict[str, tuple[str, str]] = field(default_factory=dict)


def signature(prompt: Mapping[str, Any], node_id: str) -> str:
    """The node's class and inputs with links replaced by their own signatures."""
    node = prompt[node_id]
    inputs: dict[str, Any] = {}
    for name, value in node["inputs"].items():
        if isinstance(value, list) and len(value) == 2 and str(value[0]) in prompt:
            inputs[name] = [signature(prompt, str(value[0])), value[1]]
        else:
            inputs[name] = value
    return json.dumps([node["class_type"], inputs], sort_keys=True, default=str)


def order(prompt: Mapping[str, Any], outputs: list[str]) -> list[str]:
    """The nodes the outputs need, each after its inputs."""
    seen: list[str] = []

    def visit(node_id: str) -> None:
        if node_id in seen:
            return
        for value in prompt[node_id]["inputs"].values():
            if isinstance(value, list) and len(value) == 2 and str(value[0]) in prompt:
                visit(str(value[0]))
        seen.append(node_id)

    for output in outputs:
        visit(output)
    return seen


def _colour(prompt: str, seed: int, index: int) -> tuple[int, int, int]:
    digest = hashlib.sha256(f"{prompt}|{seed}|{index}".encode()).digest()
    return digest[0], digest[1], digest[2]


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def blank_png(width: int, height: int) -> bytes:
    """A black picture, like the ``example.png`` a fresh ComfyUI has in its input folder."""
    return _png(Image.new("RGB", (width, height)))


def _floor8(size: tuple[int, int]) -> tuple[int, int]:
    return max(size[0] // 8 * 8, 8), max(size[1] // 8 * 8, 8)


def _open(files: Mapping[tuple[str, str, str], bytes], name: str) -> Image.Image:
    subfolder, _, filename = name.rpartition("/")
    data = files[("input", subfolder, filename)]
    image = Image.open(io.BytesIO(data))
    image.load()
    return ImageOps.exif_transpose(image)


@dataclass(frozen=True)
class UpscaleModel:
    """A loaded upscale model: its scale is the file's (ESRGAN "x4", "4x-", "x2")."""

    name: str

    @property
    def scale(self) -> int:
        match = re.search(r"(?:^|[^0-9])([1-8])x|x([1-8])(?:[^0-9]|$)", self.name.lower())
        return int(match[1] or match[2]) if match else 4

    def upscale(self, image: Image.Image) -> Image.Image:
        """The picture at ``scale`` times its size (Pillow stands in for the network)."""
        return image.resize((image.width * self.scale, image.height * self.scale))


async def _sample(node_id: str, inputs: Mapping[str, Any], hooks: Hooks) -> tuple[Latent]:
    latent: Latent = inputs["latent_image"]
    steps, seed, denoise = int(inputs["steps"]), int(inputs["seed"]), float(inputs["denoise"])
    width, height = latent.size
    finals = []
    for index, source in enumerate(latent.sources):
        picture = Image.new("RGB", (width, height), _colour(inputs["positive"], seed, index))
        if source is not None:
            picture = Image.blend(source, picture, min(max(denoise, 0.0), 1.0))
            if latent.mask is not None:
                picture = Image.composite(picture, source, latent.mask.resize((width, height)))
        finals.append(picture)
    grey = Image.new("RGB", (width, height), GREY)
    for step in range(1, steps + 1):
        await asyncio.sleep(hooks.step_delay)
        if hooks.interrupted():
            raise Interrupted
        preview = None
        if hooks.previews:  # latent2rgb: an eighth of the size, as JPEG
            small = Image.blend(grey, finals[0], step / steps)
            small = small.resize((max(width // 8, 8), max(height // 8, 8)))
            buffer = io.BytesIO()
            small.save(buffer, "JPEG", quality=80)
            preview = buffer.getvalue()
        await hooks.progress(node_id, step, steps, preview)
    if hooks.noise_bits:
        finals = [grain(picture, hooks.noise_bits) for picture in finals]
    return (replace(latent, sources=tuple(finals)),)


async def run_node(
    node_id: str, class_type: str, inputs: Mapping[str, Any], hooks: Hooks, counter: list[int]
) -> tuple[tuple[Any, ...], dict[str, Any] | None]:
    """One node's outputs, and its ``ui`` output (output nodes only)."""
    if class_type in hooks.failures:
        kind, message = hooks.failures.pop(class_type)
        raise NodeFailed(kind, message)
    if class_type == "CheckpointLoaderSimple":
        name = inputs["ckpt_name"]
        return (("model", name), ("clip", name), ("vae", name)), None
    if class_type == "CLIPTextEncode":
        return (str(inputs["text"]),), None
    if class_type == "EmptyLatentImage":
        size = _floor8((int(inputs["width"]), int(inputs["height"])))
        return (Latent(size, (None,) * int(inputs["batch_size"])),), None
    if class_type == "KSampler":
        return await _sample(node_id, inputs, hooks), None
    if class_type == "VAEDecode":
        latent = inputs["samples"]
        grey = Image.new("RGB", latent.size, GREY)
        return ([image if image is not None else grey for image in latent.sources],), None
    if class_type in {"VAEEncode", "VAEEncodeForInpaint"}:
        images = [image.crop((0, 0, *_floor8(image.size))) for image in inputs["pixels"]]
        mask = None
        if class_type == "VAEEncodeForInpaint":
            grow = int(inputs["grow_mask_by"])
            mask = inputs["mask"].resize(images[0].size)
            if grow:
                mask = mask.filter(ImageFilter.MaxFilter(grow * 2 + 1))
            grey = Image.new("RGB", images[0].size, GREY)
            images = [Image.composite(grey, image, mask) for image in images]
        return (Latent(images[0].size, tuple(images), mask),), None
    if class_type == "SetLatentNoiseMask":
        return (replace(inputs["samples"], mask=inputs["mask"]),), None
    if class_type == "RepeatLatentBatch":
        latent = inputs["samples"]
        return (replace(latent, sources=latent.sources * int(inputs["amount"])),), None
    if class_type == "LoadImage":
        image = _open(hooks.files, inputs["image"])
        if "A" in image.getbands():
            mask = ImageOps.invert(image.getchannel("A"))
        else:
            mask = Image.new("L", (64, 64), 0)
        return ([image.convert("RGB")], mask), None
    if class_type == "LoadImageMask":
        image = _open(hooks.files, inputs["image"]).convert("RGBA")
        band = inputs["channel"][0].upper()
        channel = image.getchannel(band)
        return (ImageOps.invert(channel) if band == "A" else channel,), None
    if class_type == "UpscaleModelLoader":
        return (UpscaleModel(str(inputs["model_name"])),), None
    if class_type == "ImageUpscaleWithModel":
        model: UpscaleModel = inputs["upscale_model"]
        await hooks.progress(node_id, 1, 1, None)
        return ([model.upscale(image) for image in inputs["image"]],), None
    if class_type in {"SaveImage", "PreviewImage"}:
        kind = "output" if class_type == "SaveImage" else "temp"
        prefix = str(inputs.get("filename_prefix", "ComfyUI")) if kind == "output" else "preview"
        saved = []
        for image in inputs["images"]:
            counter[0] += 1
            filename = f"{prefix}_{counter[0]:05d}_.png"
            hooks.files[(kind, "", filename)] = _png(image)
            saved.append({"filename": filename, "subfolder": "", "type": kind})
        return (), {"images": saved}
    raise NodeFailed("NotImplementedError", f"the fake cannot run {class_type}")


#: signature -> (a node's outputs, its ui output): what the server keeps from the last prompt.
Cache = dict[str, tuple[tuple[Any, ...], dict[str, Any] | None]]
Tell = Callable[[str, dict[str, Any]], Awaitable[None]]


async def execute(
    prompt: Mapping[str, Any],
    prompt_id: str,
    outputs_to_run: list[str],
    hooks: Hooks,
    cache: Cache,
    counter: list[int],
    tell: Tell,
) -> tuple[dict[str, Any], dict[str, Any], Cache]:
    """``PromptExecutor.execute``: runs the prompt, telling each step to its client; the ui
    outputs by node, the history's ``status``, and the cache to keep."""
    messages: list[list[Any]] = []

    async def keep(kind: str, data: dict[str, Any]) -> None:
        messages.append([kind, data])
        await tell(kind, data)

    def stamp() -> dict[str, Any]:
        return {"prompt_id": prompt_id, "timestamp": int(time.time() * 1000)}

    nodes = order(prompt, outputs_to_run)
    signatures = {node_id: signature(prompt, node_id) for node_id in nodes}
    await keep("execution_start", stamp())
    cached = [node_id for node_id in nodes if signatures[node_id] in cache]
    await keep("execution_cached", {"nodes": cached, **stamp()})
    values: dict[str, tuple[Any, ...]] = {}
    outputs: dict[str, Any] = {}
    new_cache: Cache = {}
    executed: list[str] = []
    current = ""
    try:
        for node_id in nodes:
            current = node_id
            if signatures[node_id] in cache:
                values[node_id], ui = cache[signatures[node_id]]
            else:
                shown = {"node": node_id, "display_node": node_id, "prompt_id": prompt_id}
                await tell("executing", shown)
                inputs = resolve(prompt, node_id, values)
                class_type = prompt[node_id]["class_type"]
                values[node_id], ui = await run_node(node_id, class_type, inputs, hooks, counter)
                executed.append(node_id)
            new_cache[signatures[node_id]] = (values[node_id], ui)
            if ui is not None:
                outputs[node_id] = ui
                shown = {"node": node_id, "display_node": node_id, "prompt_id": prompt_id}
                await tell("executed", {**shown, "output": ui})
        await keep("execution_success", stamp())
    except (Interrupted, NodeFailed) as stop:
        where = {"node_id": current, "node_type": prompt[current]["class_type"]}
        data = {**stamp(), **where, "executed": executed}
        if isinstance(stop, NodeFailed):
            data |= {
                "exception_message": str(stop),
                "exception_type": stop.exception_type,
                "traceback": [],
                "current_inputs": {},
                "current_outputs": {},
            }
        await keep(
            "execution_error" if isinstance(stop, NodeFailed) else "execution_interrupted", data
        )
        status = {"status_str": "error", "completed": False, "messages": messages}
        return outputs, status, {**cache, **new_cache}
    status = {"status_str": "success", "completed": True, "messages": messages}
    return outputs, status, new_cache


def resolve(
    prompt: Mapping[str, Any], node_id: str, values: Mapping[str, tuple[Any, ...]]
) -> dict[str, Any]:
    """The node's inputs with links replaced by the linked nodes' outputs."""
    resolved: dict[str, Any] = {}
    for name, value in prompt[node_id]["inputs"].items():
        if isinstance(value, list) and len(value) == 2 and str(value[0]) in values:
            resolved[name] = values[str(value[0])][value[1]]
        else:
            resolved[name] = value
    return resolved
