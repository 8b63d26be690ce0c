"""Test images made in code: every format, mode and kind of damage the tests need."""

from __future__ import annotations

import io
import os
import struct
import zlib
from typing import Any

from PIL import Image, ImageChops, ImageDraw

RED = (255, 0, 0)
BLUE = (0, 0, 255)
GREEN = (0, 255, 0)


def encode(im: Image.Image, fmt: str = "PNG", **params: Any) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, fmt, **params)
    return buffer.getvalue()


def decode_png(data: bytes) -> Image.Image:
    """Decode output, asserting it really is a PNG whose chunks all pass Pillow's CRC checks."""
    checked = Image.open(io.BytesIO(data))
    assert checked.format == "PNG"
    checked.verify()  # raises on a bad chunk CRC or a truncated stream
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def noise(mode: str, size: tuple[int, int]) -> Image.Image:
    """Incompressible pixels: the worst case for the byte limit."""
    return Image.frombytes(mode, size, os.urandom(size[0] * size[1] * len(mode)))


def halves(
    size: tuple[int, int],
    left: tuple[int, ...] = RED,
    right: tuple[int, ...] = BLUE,
    mode: str = "RGB",
) -> Image.Image:
    """Left half one colour, right half another: shows crops, rotations and flips."""
    im = Image.new(mode, size, right)
    im.paste(left, (0, 0, size[0] // 2, size[1]))
    return im


def photo(size: tuple[int, int]) -> Image.Image:
    """Smooth gradients and shapes: compresses like a photo, unlike noise."""
    im = Image.linear_gradient("L").resize(size).convert("RGB")
    draw = ImageDraw.Draw(im)
    w, h = size
    draw.ellipse((w // 5, h // 5, w // 2, h // 2), fill=(200, 60, 40))
    draw.rectangle((w // 2, h // 2, w * 4 // 5, h * 4 // 5), fill=(30, 120, 220))
    return im


def grainy_photo(size: tuple[int, int]) -> Image.Image:
    """``photo`` with sensor-like grain: compresses about as badly as a real photo."""
    grain = Image.effect_noise(size, 10).convert("RGB")
    return ImageChops.add(photo(size), grain, scale=1.0, offset=-128)


def screenshot(size: tuple[int, int]) -> Image.Image:
    """Dark text on white: long runs, where a Huffman-only encoder would be 4x too big."""
    im = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(im)
    for y in range(0, size[1], 14):
        draw.text((4, y), "The quick brown fox jumps over the lazy dog 0123456789 " * 4, fill=0)
    return im


def png_header_only(width: int, height: int, bit_depth: int = 8, color_type: int = 2) -> bytes:
    """A PNG that declares a size but holds almost no data: a decompression bomb's header."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"".join(
        (b"\x89PNG\r\n\x1a\n", _chunk(b"IHDR", ihdr), _chunk(b"IDAT", idat), _chunk(b"IEND", b""))
    )


def bilevel_png(width: int, height: int) -> bytes:
    """A complete 1-bit PNG, every row encoded: small on disk, huge once decoded."""
    row = b"\x00" + bytes([0b10110010]) * ((width + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"".join(
        (b"\x89PNG\r\n\x1a\n", _chunk(b"IHDR", ihdr), _chunk(b"IDAT", idat), _chunk(b"IEND", b""))
    )


def png_16bit(width: int, height: int, color_type: int, pixel: tuple[int, ...]) -> bytes:
    """A 16-bit PNG of one colour (Pillow can't write most of these itself)."""
    row = b"\x00" + struct.pack(f">{len(pixel)}H", *pixel) * width
    ihdr = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    idat = zlib.compress(row * height)
    return b"".join(
        (b"\x89PNG\r\n\x1a\n", _chunk(b"IHDR", ihdr), _chunk(b"IDAT", idat), _chunk(b"IEND", b""))
    )


def png_exif_after_pixels(data: bytes) -> bytes:
    """The same PNG with its eXIf chunk moved behind the pixel data (the spec allows both)."""
    chunks, offset = [], 8
    while offset < len(data):
        length = struct.unpack(">I", data[offset : offset + 4])[0]
        chunks.append(data[offset : offset + 12 + length])
        offset += 12 + length
    exif = [c for c in chunks if c[4:8] == b"eXIf"]
    rest = [c for c in chunks if c[4:8] != b"eXIf"]
    assert len(exif) == 1
    return b"\x89PNG\r\n\x1a\n" + b"".join(rest[:-1] + exif + rest[-1:])


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def pixel(im: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    value = im.getpixel(xy)
    assert isinstance(value, tuple)
    return value


def close_to(
    actual: tuple[int, ...] | float | None, expected: tuple[int, ...], tolerance: int = 24
) -> bool:
    assert isinstance(actual, tuple)
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))
