"""The byte limit: fast path, colour reduction, shrinking, and the PNG writer itself."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

import pytest
from PIL import Image, ImageChops

from bot.imaging.encode import (
    encode_under,
    next_side,
    pixels_intact,
    plain_png,
    quantize,
    write_png,
)
from tests.imaging.samples import decode_png, grainy_photo, noise, photo, screenshot

LIMIT = 4_000_000


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
@pytest.mark.parametrize("make", [noise, lambda mode, size: photo(size).convert(mode)])
def test_written_pngs_decode_to_exactly_the_same_pixels(
    mode: str, make: Callable[[str, tuple[int, int]], Image.Image]
) -> None:
    im = make(mode, (97, 61))
    out = decode_png(write_png(im))
    assert out.mode == mode and out.size == (97, 61)
    assert ImageChops.difference(out, im).getbbox() is None


def test_writer_refuses_modes_it_does_not_write() -> None:
    with pytest.raises(ValueError, match="RGB or RGBA"):
        write_png(Image.new("L", (8, 8)))


def test_photo_like_content_takes_the_fast_path() -> None:
    encoded = encode_under(photo((1024, 1024)), LIMIT)
    assert (encoded.side, encoded.quantized) == (1024, False)
    assert len(encoded.png) < 1_000_000


def test_rgb_noise_at_1024_fits_without_changes() -> None:
    encoded = encode_under(noise("RGB", (1024, 1024)), LIMIT)
    assert len(encoded.png) < LIMIT
    assert (encoded.side, encoded.quantized) == (1024, False)


def test_rgba_noise_at_1024_is_quantized_to_fit_and_stays_rgba() -> None:
    im = noise("RGBA", (1024, 1024))
    encoded = encode_under(im, LIMIT)
    assert len(encoded.png) < LIMIT
    assert (encoded.side, encoded.quantized) == (1024, True)
    assert decode_png(encoded.png).mode == "RGBA"  # dall-e-2 edits need RGBA, not a palette


def test_a_tight_limit_walks_down_the_ladder_to_a_standard_side() -> None:
    encoded = encode_under(noise("RGB", (1024, 1024)), 400_000)
    assert encoded.side == 256
    assert len(encoded.png) < 400_000


def test_quantize_keeps_the_mode_and_reduces_colours() -> None:
    for mode in ("RGB", "RGBA"):
        reduced = quantize(noise(mode, (64, 64)))
        assert reduced.mode == mode
        assert len(reduced.getcolors(1 << 16) or []) <= 256


CORPUS: dict[str, Callable[[], Image.Image]] = {
    "photo RGB 1024": lambda: grainy_photo((1024, 1024)),
    "photo RGBA 2048": lambda: photo((2048, 2048)).convert("RGBA"),
    "screenshot RGB 1024": lambda: screenshot((1024, 1024)),
    "flat RGBA 1024": lambda: Image.new("RGBA", (1024, 1024), (10, 200, 30, 255)),
    "noise RGB 1024": lambda: noise("RGB", (1024, 1024)),
    "noise RGBA 1024": lambda: noise("RGBA", (1024, 1024)),
    "noise RGB 2048": lambda: noise("RGB", (2048, 2048)),
    "noise RGBA 2048": lambda: noise("RGBA", (2048, 2048)),
}


@pytest.mark.parametrize("name", CORPUS)
def test_every_corpus_output_is_a_valid_png_under_the_limit(name: str) -> None:
    im = CORPUS[name]()
    encoded = encode_under(im, LIMIT)
    assert len(encoded.png) < LIMIT
    out = decode_png(encoded.png)  # Pillow verifies the chunks, then decodes every row
    assert (out.mode, out.size) == (im.mode, encoded.size)
    if not encoded.quantized and encoded.size == im.size:
        assert ImageChops.difference(out, im).getbbox() is None


def test_a_picture_over_the_limit_only_at_the_fast_level_keeps_its_colours_and_size() -> None:
    """The fast encoder's files are ~13% larger; that alone must not cost a member colours."""
    im = grainy_photo((1024, 1024))
    fast, dense = len(write_png(im)), len(write_png(im, level=6))
    assert dense < fast
    limit = (fast + dense) // 2
    encoded = encode_under(im, limit)
    assert (encoded.side, encoded.quantized) == (1024, False)
    assert len(encoded.png) < limit
    assert ImageChops.difference(decode_png(encoded.png), im).getbbox() is None


def test_ladder() -> None:
    assert [next_side(s) for s in (2048, 1536, 1024, 768, 512, 256)] == [
        1536,
        1024,
        512,
        512,
        256,
        None,
    ]


def _with_rows(rows: bytes, width: int, height: int) -> bytes:
    """A plain RGB PNG around ``rows`` (filter bytes included), whatever they hold."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(data, zlib.crc32(kind))
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            chunk(b"IHDR", header),
            chunk(b"IDAT", zlib.compress(rows)),
            chunk(b"IEND", b""),
        )
    )


def test_pixels_intact_checks_what_decoding_would_find() -> None:
    """The pass-through's check (bot.imaging.normalize sends such files as they are)."""
    width, height, stride = 8, 4, 1 + 8 * 3
    good = b"".join(b"\x02" + bytes(stride - 1) for _ in range(height))
    png = write_png(photo((width, height)))
    assert plain_png(png) == (width, height, "RGB")
    assert pixels_intact(png, width, height, "RGB")
    assert pixels_intact(_with_rows(good, width, height), width, height, "RGB")
    assert not pixels_intact(_with_rows(good[:-1], width, height), width, height, "RGB")
    assert not pixels_intact(_with_rows(good + b"\x00", width, height), width, height, "RGB")
    bad_filter = b"\x07" + good[1:]
    assert not pixels_intact(_with_rows(bad_filter, width, height), width, height, "RGB")
    broken = bytearray(png)
    start = png.index(b"IDAT") + 4
    broken[start + 2 : start + 12] = b"\xff" * 10
    assert not pixels_intact(bytes(broken), width, height, "RGB")
