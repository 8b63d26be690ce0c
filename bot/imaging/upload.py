"""Make results fit Discord's upload limit without dropping any image.

Discord refuses a message whose attachments add up to more than the interaction's
``attachment_size_limit`` (commonly 10 MiB), and ten 1024x1024 PNGs are often 15-25 MB. Results
are first sent as they came; only when they do not fit are they re-encoded (WebP, which Discord
shows inline and which keeps transparency), and if even that is too large for one message the
caller splits them over several messages.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from PIL import Image

#: Qualities tried in turn for an image that alone is over the limit.
QUALITIES = (90, 80, 70, 55)
#: Every step down halves the pixel count when even the lowest quality does not fit.
MIN_SIDE = 256


@dataclass(frozen=True)
class UploadImage:
    data: bytes = field(repr=False)
    extension: str

    @property
    def size(self) -> int:
        return len(self.data)


def fit_for_upload(images: list[UploadImage], limit: int) -> list[UploadImage]:
    """The images, re-encoded only if their total is over ``limit``; each ends under ``limit``.

    The total may still exceed ``limit``; :func:`split_for_upload` then groups them.
    """
    if sum(image.size for image in images) <= limit:
        return images
    per_image = max(limit // max(len(images), 1), 1)
    return [_compress(image, per_image, limit) for image in images]


def _compress(image: UploadImage, target: int, hard_limit: int) -> UploadImage:
    with Image.open(io.BytesIO(image.data)) as opened:
        opened.load()
        picture = opened if opened.mode in {"RGB", "RGBA"} else opened.convert("RGBA")
    best = image if image.size <= hard_limit else None
    while True:
        for quality in QUALITIES:
            candidate = UploadImage(_webp(picture, quality), "webp")
            if candidate.size <= target:
                return candidate
            if candidate.size <= hard_limit and (best is None or candidate.size < best.size):
                best = candidate
        if best is not None:
            return best
        if min(picture.size) <= MIN_SIDE:
            return UploadImage(_webp(picture, QUALITIES[-1]), "webp")
        picture = picture.resize((picture.width // 2, picture.height // 2), Image.Resampling.BOX)


def _webp(picture: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, "WEBP", quality=quality, method=4)
    return buffer.getvalue()


def split_for_upload(
    images: list[UploadImage], limit: int, per_message: int = 10
) -> list[list[int]]:
    """Indexes of ``images`` grouped into messages, in order, each group within the limits."""
    groups: list[list[int]] = []
    current: list[int] = []
    total = 0
    for index, image in enumerate(images):
        if current and (total + image.size > limit or len(current) == per_message):
            groups.append(current)
            current, total = [], 0
        current.append(index)
        total += image.size
    if current:
        groups.append(current)
    return groups
