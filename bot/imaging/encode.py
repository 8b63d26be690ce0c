"""PNG output that is always under the API's byte limit, written fast in the common case.

The first attempt is our own minimal PNG writer, not ``Image.save``: Pillow's PNG encoder tries
four row filters on every row and keeps the best (about 40 ms for a 1024x1024 photo before any
compression), while here the "Up" filter is computed for the whole image in one C call
(``ImageChops.subtract_modulo`` against the image shifted down a row) and compressed with ISA-L's
deflate (the ``isal`` wheel, Intel's hand-written assembly) at its default level. Measured on the
bench photo (1024x1024 RGB, CPU ms, loaded 2-core machine): stock zlib level 1 ~55 ms for 1.36 MB;
zlib-ng level 1 ~21 ms for 1.87 MB; libdeflate level 1 ~23 ms for 1.28 MB; ISA-L ~13 ms for
1.34 MB, 2 ms for a page of text (0.26 MB) and 5 ms for noise (stored). The encoder was half of
the normalization; now decoding the JPEG is most of it. ISA-L releases the GIL like zlib, so
imaging threads really run in parallel. The output is a plain 8-bit RGB or RGBA PNG that any
decoder reads; tests decode it with Pillow and compare every pixel.

ISA-L's files are ~13% larger than stock zlib's at level 6, so a picture that is over the limit
only because of that is first encoded again with zlib (~10x slower) before anything is lost.
When that is still too big (noise-like content: a random RGBA 1024x1024 square is ~4.2 MB even
stored raw), the colours are reduced to a 256-colour palette (libimagequant when Pillow has it,
else fast octree; RGB is then dithered with that palette so gradients don't band) and encoded
again. The file stays truecolour RGB/RGBA rather than
becoming a palette PNG, because dall-e-2 refuses edit images whose mode isn't RGBA, LA or L.
If even that doesn't fit, the image shrinks (keeping its shape) until its long side is the next
smaller standard side and the whole ladder repeats; the result says what was done. A 256x256
RGBA PNG (at most ~263 KB) always fits, so the loop always ends.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import isal
from isal import isal_zlib
from PIL import Image, ImageChops, features

from bot.imaging.geometry import shrink, shrunk_size
from bot.imaging.limits import FALLBACK_SIDES

#: ISA-L's level (0-3); its default: on photos as fast as 1 and a little smaller.
FAST_LEVEL = isal_zlib.ISAL_DEFAULT_COMPRESSION
#: The stock zlib level tried when the fast PNG is over the limit.
DENSE_LEVEL = 6
#: The dense level is tried when the fast PNG is at most this many times the limit; measured
#: fast/dense ratios: 1.13 for photos, 1.0 for noise (hopeless there: stored blocks).
DENSE_HOPE = 1.3
#: Names the encoder (bench/normalize.py prints it).
ENCODER = f"ISA-L {isal.ISAL_VERSION} level {FAST_LEVEL}, Up filter"
#: Quantizing is tried when the fast PNG is at most this many times the limit; measured
#: quantized/fast ratios run from 0.4 (RGBA noise) to 0.9 (RGB noise), 0.65 for photos.
QUANTIZE_HOPE = 2.5

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPES = {"RGB": 2, "RGBA": 6}
_UP = b"\x02"

if features.check_feature("libimagequant"):
    _QUANTIZER = Image.Quantize.LIBIMAGEQUANT
else:
    _QUANTIZER = Image.Quantize.FASTOCTREE


@dataclass(frozen=True, slots=True)
class Encoded:
    png: bytes
    #: Width and height; smaller than the input's when it had to shrink to fit.
    size: tuple[int, int]
    #: Colours were reduced to 256 to fit.
    quantized: bool

    @property
    def side(self) -> int:
        """The long side (a square's side)."""
        return max(self.size)


def write_png(im: Image.Image, *, level: int | None = None) -> bytes:
    """An 8-bit RGB or RGBA image as PNG bytes, every row "Up"-filtered.

    Compressed with ISA-L, or with stock zlib at ``level`` (0-9) when one is given.
    """
    color_type = _COLOR_TYPES.get(im.mode)
    if color_type is None:
        raise ValueError(f"write_png takes RGB or RGBA images, not {im.mode}")
    width, height = im.size
    # Up filter: each byte minus the byte above it, modulo 256; the first row stays as is.
    filtered = ImageChops.subtract_modulo(im, ImageChops.offset(im, 0, 1))
    filtered.paste(im.crop((0, 0, width, 1)), (0, 0))
    raw = memoryview(filtered.tobytes())
    del filtered  # each copy of the pixels is let go as soon as the next exists
    stride = width * len(im.getbands())
    rows = _UP.join([b"", *(raw[i : i + stride] for i in range(0, len(raw), stride))])
    del raw
    idat = _deflate(rows) if level is None else zlib.compress(rows, level)
    del rows
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return b"".join(
        (_SIGNATURE, _chunk(b"IHDR", header), _chunk(b"IDAT", idat), _chunk(b"IEND", b""))
    )


def plain_png(data: bytes) -> tuple[int, int, str] | None:
    """Width, height and mode of a PNG holding nothing but what ``write_png`` writes, else None.

    8-bit RGB or RGBA, not interlaced, and no chunk but IHDR, IDAT and IEND: no metadata, no
    colour profile, no EXIF rotation. Such a file at the target size needs no new encoding
    (``normalize_image`` sends it as it is once ``pixels_intact`` says so), which is how a job's
    normalized input is not encoded a second time when it is sent. Reads the chunk headers only.
    """
    found: tuple[int, int, str] | None = None
    for kind, start, end in _chunks(data):
        if kind == b"IHDR":
            if found is not None or end - start != 13:
                return None
            width, height, depth, color_type, _, _, interlace = struct.unpack_from(
                ">IIBBBBB", data, start
            )
            mode = next((m for m, t in _COLOR_TYPES.items() if t == color_type), None)
            if depth != 8 or interlace or mode is None:
                return None
            found = (width, height, mode)
        elif kind == b"IEND":
            return found if end + 4 == len(data) else None
        elif kind != b"IDAT" or found is None:
            return None
    return None


def pixels_intact(data: bytes, width: int, height: int, mode: str) -> bool:
    """Whether a ``plain_png`` file's pixel data is whole: what decoding it would find, cheaper.

    One zlib stream that inflates (with ISA-L, ~3 ms for a 1024x1024 photo instead of ~20 ms
    for Pillow to decode it) to exactly its rows, each starting with a valid filter type.
    Inflating stops one byte past the expected size, so a stream that claims more costs nothing.
    """
    stride = 1 + width * len(mode)
    expected = stride * height
    stream = b"".join(data[start:end] for kind, start, end in _chunks(data) if kind == b"IDAT")
    inflater = isal_zlib.decompressobj()
    try:
        rows = inflater.decompress(stream, expected + 1)
    except Exception:  # isal_zlib.error (its stub types it as an instance, not a class)
        return False
    if len(rows) != expected or not inflater.eof or inflater.unused_data:
        return False
    return max(rows[::stride]) <= 4  # None, Sub, Up, Average, Paeth


def _chunks(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """Each chunk's type and where its payload starts and ends; stops at the first broken one."""
    if not data.startswith(_SIGNATURE):
        return
    pos = len(_SIGNATURE)
    while pos + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 8 + length
        if end + 4 > len(data):
            return
        yield kind, pos + 8, end
        pos = end + 4


def quantize(im: Image.Image) -> Image.Image:
    """``im`` with at most 256 colours, in the same mode (so it compresses, not changes type)."""
    if im.mode == "RGBA":
        # Only octree and libimagequant keep alpha; neither takes a palette to dither against.
        return im.quantize(256, method=_QUANTIZER).convert("RGBA")
    palette = im.quantize(256, method=_QUANTIZER)
    if _QUANTIZER is Image.Quantize.LIBIMAGEQUANT:
        return palette.convert(im.mode)  # libimagequant dithers by itself
    return im.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG).convert(im.mode)


def encode_under(im: Image.Image, limit: int) -> Encoded:
    """``im`` as a PNG of fewer than ``limit`` bytes, shrinking it if it must."""
    current = im
    while True:
        png = _fast_then_dense(current, limit)
        if len(png) < limit:
            return Encoded(png, current.size, quantized=False)
        # Reducing colours at best halves a file (random RGBA noise); don't try when hopeless.
        if len(png) < QUANTIZE_HOPE * limit:
            png = _fast_then_dense(quantize(current), limit)
            if len(png) < limit:
                return Encoded(png, current.size, quantized=True)
        smaller = next_side(max(current.size))
        if smaller is None:  # unreachable with ImageLimits' minimum output size
            raise RuntimeError(
                f"a {current.width}x{current.height} image does not fit in {limit} bytes"
            )
        current = shrink(im, shrunk_size(im.size, smaller))


def _fast_then_dense(im: Image.Image, limit: int) -> bytes:
    """The fast PNG, or the dense one when only the fast level's extra bytes put it over."""
    png = write_png(im)
    if limit <= len(png) < DENSE_HOPE * limit:
        png = write_png(im, level=DENSE_LEVEL)
    return png


def next_side(side: int) -> int | None:
    """The next smaller standard side to fall back to, or None below the smallest."""
    return next((s for s in FALLBACK_SIDES if s < side), None)


def _deflate(data: bytes) -> bytes:
    # A compressor object: its compress() runs ISA-L with the GIL released.
    compressor = isal_zlib.compressobj(FAST_LEVEL)
    return compressor.compress(data) + compressor.flush()


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = isal_zlib.crc32(data, isal_zlib.crc32(kind))
    return b"".join((struct.pack(">I", len(data)), kind, data, struct.pack(">I", crc)))
