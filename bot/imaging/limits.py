"""The limits an upload is held to, and the size checks that run while it is still downloading.

Defaults, and why:

* ``max_bytes`` 25 MiB: the largest attachment a Discord member without Nitro could send until
  2024, far above a 12 MP phone JPEG (3-6 MB) yet small enough to keep in memory per request.
* ``max_pixels`` 50 MP: 48 MP phone cameras (8064x6048 = 48.8 MP) are common and must pass; a
  decoded 50 MP RGBA image is 200 MB, which bounds the memory of each imaging thread. Checked
  from the file header before any pixel is decoded, so a tiny file that declares a huge canvas
  (a decompression bomb) costs nothing.
* ``max_aspect_ratio`` 4: past 4:1 a centre crop keeps less than a quarter of the picture, and
  padding shrinks it to a strip a quarter of the square high; either way the result no longer
  looks like the upload, so the member is asked to crop it instead of getting a surprise.
  Phone screenshots (about 2.2:1) and 3:1 banners pass.
* No smallest side: a 16x16 icon or emoji is scaled up to the requested square like any other
  picture; refusing it helped nobody, and the member sees the result and can judge it.
* ``output_max_bytes`` 4,000,000: the Images API limit for dall-e-2 image and mask uploads
  ("less than 4 MB"), read as decimal megabytes to be safe.

``check_declared_size`` and ``SizeCappedBuffer`` are pure so the async download loop elsewhere
can stop reading the moment an upload is known to be too big instead of after buffering it all.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.imaging.errors import DownloadTooLarge, ImageTooLarge, megabytes

#: Square sides the encoder falls back to, largest first, when a PNG won't fit the byte limit.
#: dall-e-2 takes 256/512/1024; GPT image models take 1024 and larger multiples of 16.
FALLBACK_SIDES: tuple[int, ...] = (2048, 1536, 1024, 512, 256)

#: Smallest output side: a 256x256 RGBA PNG can never exceed the output limit checked below.
MIN_OUTPUT_BYTES = 300_000


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """What an upload may be; built once from the operator's settings and passed in."""

    max_bytes: int = 25 * 1024 * 1024
    max_pixels: int = 50_000_000
    max_aspect_ratio: float = 4.0
    output_max_bytes: int = 4_000_000

    def __post_init__(self) -> None:
        if self.max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        if self.max_pixels < 1:
            raise ValueError("max_pixels must be positive")
        if self.max_aspect_ratio < 1.0:
            raise ValueError("max_aspect_ratio must be at least 1 (a square)")
        if self.output_max_bytes < MIN_OUTPUT_BYTES:
            # Below this even a 256x256 RGBA PNG stored without compression might not fit,
            # and the encoder promises to always produce something.
            raise ValueError(f"output_max_bytes must be at least {MIN_OUTPUT_BYTES}")


DEFAULT_LIMITS = ImageLimits()


def check_declared_size(declared: int | None, limit: int) -> None:
    """Refuse a download whose declared size (Discord's attachment size, Content-Length) is over.

    ``None`` or a negative value means the size is unknown; the streaming cap then decides.
    """
    if declared is not None and declared > limit:
        raise ImageTooLarge(size_mb=megabytes(declared, round_up=True), limit_mb=megabytes(limit))


class SizeCappedBuffer:
    """Collects a download chunk by chunk and fails as soon as it passes the limit.

    A declared size can lie or be missing; this is what actually bounds memory, because the
    chunk that crosses the limit is refused before it is stored.
    """

    __slots__ = ("_buffer", "limit")

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError("limit must not be negative")
        self.limit = limit
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> None:
        if len(self._buffer) + len(chunk) > self.limit:
            raise DownloadTooLarge(limit_mb=megabytes(self.limit))
        self._buffer += chunk

    def __len__(self) -> int:
        return len(self._buffer)

    def getvalue(self) -> bytes:
        return bytes(self._buffer)
