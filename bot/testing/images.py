"""Small images the end-to-end tests upload, and readers for the images the bot posts."""

from __future__ import annotations

import io
import os
import random
from typing import Any

from PIL import Image, ImageChops, ImageDraw, ImageFilter


def png_bytes(
    width: int = 64,
    height: int = 64,
    colour: tuple[int, int, int] = (200, 60, 40),
    *,
    hole: tuple[int, int, int, int] | None = None,
) -> bytes:
    """An opaque RGBA PNG; ``hole`` (left, top, right, bottom) is made fully transparent."""
    image = Image.new("RGBA", (width, height), (*colour, 255))
    if hole is not None:
        ImageDraw.Draw(image).rectangle(hole, fill=(0, 0, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def photo_jpeg(width: int = 4000, height: int = 3000, seed: int = 12) -> bytes:
    """A 12 MP JPEG that compresses and decodes like a phone photo (4.4 MB): the bench upload."""
    rnd = random.Random(seed)
    cells = bytes(rnd.randrange(256) for _ in range(8 * 6 * 3))
    im = Image.frombytes("RGB", (8, 6), cells).resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(im)
    for _ in range(30):
        x, y, r = rnd.randrange(width), rnd.randrange(height), rnd.randrange(60, 500)
        colour = (rnd.randrange(256), rnd.randrange(256), rnd.randrange(256))
        if rnd.random() < 0.5:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        else:
            draw.rectangle((x - r, y - r // 2, x + r, y + r // 2), fill=colour)
    im = im.filter(ImageFilter.GaussianBlur(3))
    grain = Image.effect_noise((width, height), 10).convert("RGB")
    im = ImageChops.add(im, grain, scale=1.0, offset=-128)
    buffer = io.BytesIO()
    im.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def bw_mask_bytes(width: int, height: int, box: tuple[int, int, int, int]) -> bytes:
    """A black-and-white mask (no alpha): white ``box`` is the area to change."""
    image = Image.new("L", (width, height), 0)
    ImageDraw.Draw(image).rectangle(box, fill=255)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def noise_png(side: int) -> bytes:
    """A PNG that does not compress (about 3 bytes per pixel): side 2000 is a 12 MB photo-sized
    upload that no encoder shrinks."""
    image = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def decode_image(data: bytes) -> Any:
    """A loaded PIL image (fails the test if ``data`` is not an image)."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def colour_of(data: bytes) -> tuple[int, int, int]:
    """The RGB colour of an image's top-left pixel (the fake image API paints solid colours)."""
    with Image.open(io.BytesIO(data)) as image:
        pixel = image.convert("RGB").getpixel((0, 0))
    assert isinstance(pixel, tuple)
    return pixel[0], pixel[1], pixel[2]
