"""The pictures the fake AUTOMATIC1111 paints, and how the web UI composes and encodes them.

No diffusion, but the same geometry: sizes on the latent grid, init images resized to the
request, masks read as ``Img2Img.init`` reads them (an alpha channel if it is not all opaque,
else grey; white repaints; inverted on request; blurred) and the original pasted back over
everything the mask keeps, PNGs with the infotext in their ``parameters`` chunk.
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
import random
from typing import Any

from PIL import Image, ImageChops, ImageFilter, ImageOps, PngImagePlugin

from bot.testing.automatic1111_rules import Checkpoint

GREY = (127, 127, 127)


def overlay(mask: Image.Image, v: dict[str, Any], width: int, height: int) -> Image.Image:
    """Where the generated pixels show (255) over the original, as ``Img2Img.init`` builds it."""
    if mask.mode == "RGBA" and mask.getextrema()[-1] != (255, 255):
        edit = mask.getchannel("A").point(lambda x: 255 if x > 128 else 0)
    else:
        edit = mask.convert("L")
    if v["inpainting_mask_invert"]:
        edit = ImageOps.invert(edit)
    blur = v["mask_blur"] if v["mask_blur"] is not None else v["mask_blur_x"]
    if blur > 0:
        edit = edit.filter(ImageFilter.GaussianBlur(blur))
    edit = edit.resize((width, height))
    if not v["inpaint_full_res"]:
        edit = edit.point(lambda x: min(x * 2, 255))
    return edit


def paint(
    prompt: str, seed: int, width: int, height: int, init: Image.Image | None, denoising: float
) -> Image.Image:
    digest = hashlib.sha256(f"{prompt}|{seed}".encode()).digest()
    image = solid((digest[0], digest[1], digest[2]), width, height)
    if init is None:
        return image
    return Image.blend(init, image, max(0.0, min(denoising, 1.0)))


def solid(colour: tuple[int, int, int], width: int, height: int) -> Image.Image:
    return Image.new("RGB", (width, height), colour)


def grid(images: list[Image.Image]) -> Image.Image:
    """``images.image_grid`` with ``n_rows = -1``: the squarest grid that divides the count."""
    rows = max(int(math.sqrt(len(images))), 1)
    while len(images) % rows:
        rows -= 1
    cols = math.ceil(len(images) / rows)
    w, h = images[0].size
    grid = Image.new("RGB", (cols * w, rows * h))
    for i, image in enumerate(images):
        grid.paste(image, (i % cols * w, i // cols * h))
    return grid


def infotext(
    v: dict[str, Any], sampler: str, checkpoint: Checkpoint, seed: int, w: int, h: int
) -> str:
    negative = f"\nNegative prompt: {v['negative_prompt']}" if v["negative_prompt"] else ""
    params = (
        f"Steps: {v['steps']}, Sampler: {sampler}, Schedule type: Automatic, CFG scale: "
        f"{v['cfg_scale']:g}, Seed: {seed}, Size: {w}x{h}, Model hash: {checkpoint.shorthash}, "
        f"Model: {checkpoint.model_name}, Version: v1.10.1"
    )
    return f"{v['prompt']}{negative}\n{params}".strip()


def png_b64(image: Image.Image) -> str:
    info = PngImagePlugin.PngInfo()
    for key, value in image.info.items():
        if isinstance(key, str) and isinstance(value, str):
            info.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", pnginfo=info)
    return base64.b64encode(buffer.getvalue()).decode()


def decode_image(encoding: str) -> Image.Image | None:
    """``decode_base64_to_image`` (data: URLs too); None where it says "Invalid encoded image"."""
    if encoding.startswith("data:image/"):
        encoding = encoding.split(";")[1].split(",")[1]
    try:
        image = Image.open(io.BytesIO(base64.b64decode(encoding)))
        image.load()
    except Exception:  # Pillow raises many types for broken input
        return None
    return image


def grain(image: Image.Image, bits: int) -> Image.Image:
    """``image`` with ``bits`` of random noise per channel, so its PNG weighs what a real
    render does (2 bits: about 1.6 MB at 1024x1024); the same for the same size."""
    seeded = random.Random(f"{image.size}:{bits}")
    width, height = image.size
    noise = Image.frombytes("RGB", image.size, seeded.randbytes(width * height * 3))
    noise = noise.point([value & ((1 << bits) - 1) for value in range(256)] * 3)
    return ImageChops.add(image.convert("RGB"), noise)
