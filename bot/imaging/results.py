"""Checking the images a provider sent back before anyone sees or stores them.

A provider answer is untrusted input like an upload: it may be truncated, in a format Discord
cannot show, or a decompression bomb that delivery (re-encoding for Discord) would have to
decode. ``verify()`` reads every chunk, so this runs through :class:`ImageWorker`, never on the
event loop. It raises ``ValueError`` with a one-line reason; the provider client turns that
into its own "malformed response" error (this package knows nothing of providers).
"""

from __future__ import annotations

import io
from typing import NamedTuple

from PIL import Image

#: Four times the largest size any built-in model makes (3840x2160 is 8.3 MP): a larger "result"
#: is a decompression bomb that delivery (re-encoding for Discord) would have to decode.
MAX_RESULT_PIXELS = 36_000_000


class ResultImage(NamedTuple):
    """What a verified result is: its mime type and pixel size."""

    mime_type: str
    width: int
    height: int


def verify_results(images: list[bytes]) -> list[ResultImage]:
    """Each image's mime type and size; ValueError for the first that cannot be delivered."""
    return [verify_result(data) for data in images]


def verify_result(data: bytes) -> ResultImage:
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind, (width, height) = image.format, image.size
            image.verify()
    except Exception as exc:  # Pillow raises many types for broken input
        raise ValueError(f"image does not decode ({type(exc).__name__})") from None
    mime = Image.MIME.get(kind or "")
    if mime is None:
        raise ValueError(f"image in unknown format {kind!r}")
    if width * height > MAX_RESULT_PIXELS:
        raise ValueError(f"image is {width}x{height} pixels, more than any model makes")
    return ResultImage(mime, width, height)
