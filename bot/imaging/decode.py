"""Reading untrusted uploads: identify, check the header, then decode only what is needed.

Every check that can be made from the header (format, pixel count, aspect ratio, size) runs
before a single pixel is decoded, so a 40 KB PNG that declares a 100,000 x 100,000 canvas is
refused in microseconds instead of allocating 40 GB. The EXIF orientation is read only after
those checks, and never by decoding: Pillow's ``getexif()`` on a PNG decodes the whole image to
reach an ``eXIf`` chunk stored after the pixels, so that chunk is found by walking the chunk
list instead (``_png_exif``). Pillow has its own decompression-bomb guard
(``Image.MAX_IMAGE_PIXELS``), but it is process-wide, warns instead of failing below twice its
limit, and would fight an operator's own ``max_pixels``. So uploads are identified through the
plugin registry directly (the same loop ``Image.open`` runs, minus that guard) and our limit is
the only one that applies; a ``DecompressionBombError`` raised later anyway (a GIF frame larger
than its canvas) still becomes our error. No global Pillow setting is changed.

Only the formats Discord members actually send are tried (PNG, JPEG, WebP, GIF, BMP, TIFF, and
AVIF when Pillow has it): fewer parsers see hostile bytes, and anything else gets a message
naming the formats that work. Animated GIF/WebP decode their first frame only.

JPEG photos are decoded with ``Image.draft``: libjpeg scales by 1/2, 1/4 or 1/8 inside the DCT,
which is several times cheaper than decoding 12 MP and resizing, to the scale nearest the output
size (at most a factor of the square root of 2 below it: ``geometry.Placement.max_reduce``).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import IO, NamedTuple

from PIL import Image, ImageFile, ImageOps

from bot.imaging.errors import (
    ImageAspectRatio,
    ImageCorrupt,
    ImageEmpty,
    ImageError,
    ImageTooLarge,
    ImageTooManyPixels,
    NotAnImage,
    UnsupportedImageFormat,
    megabytes,
)
from bot.imaging.limits import ImageLimits

log = logging.getLogger(__name__)

Image.init()  # registers the WebP/TIFF/AVIF plugins, which Image.open would load lazily

#: Pillow format ids tried, most common first. MPO (multi-picture JPEG from phones) comes out of
#: the JPEG plugin by itself.
ACCEPTED_FORMATS: tuple[str, ...] = tuple(
    fmt for fmt in ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF") if fmt in Image.OPEN
)
_DISPLAY = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP", "GIF": "GIF", "BMP": "BMP"}
_DISPLAY |= {"TIFF": "TIFF", "AVIF": "AVIF"}
#: For messages, help and the README: the formats every install reads, "PNG, JPEG, WebP, GIF,
#: BMP or TIFF". AVIF is read too where the installed Pillow can, but not promised.
_SHOWN = [name for fmt, name in _DISPLAY.items() if fmt in ACCEPTED_FORMATS and fmt != "AVIF"]
ACCEPTED_NAMES = ", ".join(_SHOWN[:-1]) + f" or {_SHOWN[-1]}"

_JPEG_FORMATS = frozenset({"JPEG", "MPO"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "La", "RGBa", "PA"})
WIDE_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
# ISO-BMFF brands (the 4 bytes after "ftyp") of still-image formats Pillow can't read here.
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
_BMP_HEADER_SIZES = {12, 16, 40, 52, 56, 64, 108, 124}


class ImageInfo(NamedTuple):
    """What ``probe`` learns from the header: the size is as displayed (EXIF rotation applied)."""

    format: str
    width: int
    height: int


@dataclass(slots=True)
class OpenedImage:
    """A header that passed every check; the pixels are not decoded yet."""

    image: ImageFile.ImageFile
    format: str
    #: Width and height as displayed, i.e. after EXIF orientation.
    size: tuple[int, int]
    #: EXIF orientation, 1-8; 1 (upright) also when the EXIF block is unreadable.
    orientation: int = 1


def has_alpha(im: Image.Image) -> bool:
    """Whether any pixel can be transparent: an alpha band, or a transparent colour or entry."""
    return im.mode in _ALPHA_MODES or ("transparency" in im.info and im.mode not in WIDE_MODES)


def open_image(data: bytes, limits: ImageLimits, *, check_shape: bool = True) -> OpenedImage:
    """Identify ``data`` and run the header checks; raises an ``ImageError`` subclass.

    ``check_shape=False`` is for a mask, whose shape must match an image's that passed the
    aspect ratio check: a mismatch is the more useful message. The pixel limit holds always.
    """
    if not data:
        raise ImageEmpty()
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(
            size_mb=megabytes(len(data), round_up=True), limit_mb=megabytes(limits.max_bytes)
        )
    im = _identify(data)
    if im is None:
        raise _unreadable(data)
    width, height = im.size
    if width < 1 or height < 1:
        raise ImageCorrupt()
    # Both checks are the same either way round, so they run before the EXIF block is read.
    if width * height > limits.max_pixels:
        raise ImageTooManyPixels(**_pixel_params(width, height, limits.max_pixels))
    if check_shape and max(width, height) > limits.max_aspect_ratio * min(width, height):
        raise ImageAspectRatio(width=width, height=height, max_ratio=limits.max_aspect_ratio)
    orientation = _orientation(im, data)
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return OpenedImage(im, im.format or "unknown", (width, height), orientation)


def probe(data: bytes, limits: ImageLimits) -> ImageInfo:
    """The cheap checks only (no decoding): for answering a member before queueing the work."""
    opened = open_image(data, limits)
    return ImageInfo(opened.format, *opened.size)


def load(opened: OpenedImage, *, max_reduce: int = 1) -> tuple[Image.Image, float]:
    """Decode the pixels, upright, shrunk by up to ``max_reduce`` where that is free (JPEG).

    Returns the image and the factor it was shrunk by: source coordinates divided by it give
    coordinates in the returned image, which is how a mask stays aligned with a JPEG photo.
    """
    im = opened.image
    scale = 1.0
    if opened.format in _JPEG_FORMATS and max_reduce >= 2:
        factor = next(f for f in (8, 4, 2) if f <= max_reduce)
        width, height = im.size
        # draft() picks the largest 1/2^n reduction keeping at least the requested size.
        drafted = im.draft(im.mode, (max(1, width // factor), max(1, height // factor)))
        if drafted is not None:
            scale = width / drafted[1][2]
    try:
        im.load()
        if opened.orientation != 1:
            ImageOps.exif_transpose(im, in_place=True)
    except Image.DecompressionBombError:
        width, height = opened.size
        raise ImageTooManyPixels(**_pixel_params(width, height, 0)) from None
    except ImageError:
        raise
    except Exception as exc:  # Pillow signals broken data with many exception types
        log.debug("decoding a %s upload failed: %r", opened.format, exc)
        raise ImageCorrupt() from None
    return im, scale


def to_rgb(im: Image.Image, *, keep_alpha: bool) -> Image.Image:
    """Any decoded mode as 8-bit RGB, or RGBA when ``keep_alpha`` and there is transparency.

    Dropped transparency is flattened onto white, not black: most transparent uploads are logos,
    stickers and line art drawn for a light background, and black would swallow dark strokes.
    """
    if im.mode in WIDE_MODES:
        im = to_8bit_gray(im)
    if has_alpha(im):
        rgba = im if im.mode == "RGBA" else im.convert("RGBA")
        if keep_alpha:
            return rgba
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    if im.mode == "RGB":
        return im
    return im.convert("RGB")


def to_8bit_gray(im: Image.Image) -> Image.Image:
    """16-bit, 32-bit and float greyscale scaled into 0-255.

    A plain ``convert("L")`` clips instead of scaling, which turns a 16-bit PNG all white.
    16-bit data uses the full 0-65535 range; float data in 0-1 is scaled by 255; anything else
    (unusual ranges, negatives) is stretched between its own darkest and brightest pixel.
    """
    if im.mode != "F":
        im = im.convert("I")
    low, high = im.getextrema()
    assert isinstance(low, int | float) and isinstance(high, int | float)
    if low >= 0 and high <= 255 and im.mode != "F":
        pass  # 8-bit values stored wide: already in range
    elif low >= 0 and high <= 65535 and im.mode != "F":
        im = im.point(lambda v: v * (1 / 257))
    elif low >= 0 and high <= 1.0:
        im = im.point(lambda v: v * 255)
    elif high > low:
        span = 255 / (high - low)
        im = im.point(lambda v: v * span - low * span)
    return im.convert("L")


def _identify(data: bytes) -> ImageFile.ImageFile | None:
    prefix = data[:16]
    for fmt in ACCEPTED_FORMATS:
        factory, accept = Image.OPEN[fmt]
        verdict = accept(prefix) if accept is not None else True
        if not verdict or isinstance(verdict, str):
            continue
        fp: IO[bytes] = io.BytesIO(data)
        try:
            return factory(fp, "")
        except Exception as exc:  # a header that matches the magic but doesn't parse
            log.debug("%s header did not parse: %r", fmt, exc)
    return None


def _unreadable(data: bytes) -> ImageError:
    """Why nothing could open ``data``: damaged, a format we don't read, or no image at all."""
    head = data[:64]
    if _looks_accepted(head):
        return ImageCorrupt()
    other = _other_image_format(data)
    if other is not None:
        return UnsupportedImageFormat(format=other, formats=ACCEPTED_NAMES)
    return NotAnImage(formats=ACCEPTED_NAMES)


def _looks_accepted(head: bytes) -> bool:
    if head.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a")):
        return True
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return True
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return True
    if head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis"):
        return "AVIF" in ACCEPTED_FORMATS
    return head.startswith(b"BM") and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES


def _other_image_format(data: bytes) -> str | None:
    head = data[:32]
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _HEIF_BRANDS:
            return "HEIC"
        if brand in (b"avif", b"avis"):
            return "AVIF"
    if head.startswith((b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n")):
        return "JPEG XL"
    if head.startswith((b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51")):
        return "JPEG 2000"
    if head.startswith(b"8BPS"):
        return "Photoshop (PSD)"
    if head.startswith(b"\x00\x00\x01\x00"):
        return "ICO"
    if head.startswith(b"qoif"):
        return "QOI"
    if b"<svg" in data[:4096].lower():
        return "SVG"
    return None


def _orientation(im: ImageFile.ImageFile, data: bytes) -> int:
    try:
        if im.format == "PNG" and "exif" not in im.info:
            exif = _png_exif(data)
            if exif is not None:
                im.info["exif"] = exif
        # The base class reads only what the header gave (PNG's own override would decode).
        value = Image.Image.getexif(im).get(0x0112, 1)  # ExifTags.Base.Orientation
    except Exception:  # a broken EXIF block shouldn't sink a readable picture
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _png_exif(data: bytes) -> bytes | None:
    """The payload of a PNG's ``eXIf`` chunk wherever it is, found without decompressing."""
    offset = 8
    while offset + 8 <= len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        kind = data[offset + 4 : offset + 8]
        if kind == b"eXIf":
            return data[offset + 8 : offset + 8 + length]
        if kind == b"IEND":
            return None
        offset += 12 + length
    return None


def _pixel_params(width: int, height: int, limit: int) -> dict[str, int | float]:
    if not limit:  # Pillow's own guard fired: its hard limit is twice MAX_IMAGE_PIXELS
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
    return {
        "width": width,
        "height": height,
        "megapixels": round(width * height / 1_000_000, 1),
        "limit_megapixels": round(limit / 1_000_000, 1),
    }
