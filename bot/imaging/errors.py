"""Everything that can be wrong with an upload, as errors a member can act on.

Each class names one problem with a stable ``key`` (for translations) and an English ``template``
that says what is wrong and what the limit or the fix is; the numbers come in as named params so
a translated template can place them differently. Nothing here carries a Pillow message or a
traceback: those say nothing useful to a member and are logged by the caller if at all.

Errors about the second upload of an edit (the mask) carry ``subject="mask"`` in their params, so
"That file isn't an image" can be told apart from the same problem with the picture itself.
"""

from __future__ import annotations

import math
from typing import Self

from bot.errors import BotError

_MIB = 1024 * 1024


def megabytes(size: int, *, round_up: bool = False) -> float:
    """Bytes as MB (MiB, as Discord counts them) with one decimal.

    Sizes are rounded up so a file one byte over a 25 MB limit reads "25.1 MB", not "25 MB".
    """
    value = size / _MIB
    if round_up:
        return math.ceil(value * 10) / 10
    return round(value, 1)


class ImageError(BotError):
    """An upload that cannot be turned into something the image API accepts."""

    key = "image.error"
    template = "That image can't be used."

    @property
    def subject(self) -> str:
        """Which upload the problem is about: "image" (the default) or "mask"."""
        return str(self.params.get("subject", "image"))

    def worded(self, template: str) -> str:
        base = super().worded(template)
        if self.subject == "mask" and not isinstance(self, MaskError):
            return f"Mask: {base}"
        return base

    def about(self, subject: str) -> Self:
        """The same error, said about another upload (re-raised by edits for the mask file)."""
        return type(self)(**{**self.params, "subject": subject})


class ImageEmpty(ImageError):
    key = "image.empty"
    template = "That file is empty (0 bytes). Please upload the image again."


class ImageTooLarge(ImageError):
    key = "image.too_large"
    template = "That file is {size_mb:g} MB; the limit is {limit_mb:g} MB."


class DownloadTooLarge(ImageTooLarge):
    """Raised mid-download, when the total size is not known yet (only that it is too much)."""

    key = "image.too_large_download"
    template = "That file is larger than the limit of {limit_mb:g} MB."


class NotAnImage(ImageError):
    key = "image.not_an_image"
    template = "That file isn't an image. Please upload a picture as {formats}."


class UnsupportedImageFormat(ImageError):
    key = "image.unsupported_format"
    template = "{format} images can't be read here. Please convert it to {formats} and try again."


class ImageCorrupt(ImageError):
    key = "image.corrupt"
    template = (
        "That image file is damaged or incomplete (perhaps the upload was cut off). "
        "Please upload it again, or open it in an image editor and save a new copy."
    )


class ImageTooManyPixels(ImageError):
    key = "image.too_many_pixels"
    template = (
        "That image is {width}x{height} pixels ({megapixels:g} megapixels); "
        "the limit is {limit_megapixels:g} megapixels. Please upload a smaller version."
    )


class ImageAspectRatio(ImageError):
    key = "image.aspect_ratio"
    template = (
        "That image is {width}x{height} pixels; the longest side may be at most "
        "{max_ratio:g} times the shortest. Please crop it closer to a square."
    )


class MaskError(ImageError):
    """A problem with the area to edit rather than with a file: messages say "mask" already."""

    key = "image.mask"
    template = "The mask can't be used."


class MaskSizeMismatch(MaskError):
    key = "image.mask_size_mismatch"
    template = (
        "The mask is {mask_width}x{mask_height} pixels but the image is "
        "{image_width}x{image_height}; a mask must have the image's size, or its shape "
        "at another size."
    )


class MaskMarksNothing(MaskError):
    key = "image.mask_empty"
    template = (
        "The mask doesn't mark anything to change. Make the area to change transparent, "
        "or paint it white on a black mask."
    )


class MaskMarksEverything(MaskError):
    key = "image.mask_full"
    template = (
        "The mask marks the whole picture as the area to change. Leave the part to keep "
        "opaque (or black); to make an entirely new picture, generate one from a prompt instead."
    )


class MaskNotBlackAndWhite(MaskError):
    key = "image.mask_not_black_and_white"
    template = (
        "The mask should be black and white (white marks the area to change) or have "
        "transparent areas, but it looks like a photo. Did you upload the picture twice?"
    )


class MaskAreaLost(MaskError):
    key = "image.mask_area_lost"
    template = (
        "After fitting the image to {width}x{height}, nothing marked is left: the "
        "marked area is too small, or outside the part that is kept. Mark a larger area."
    )


class EditNeedsMask(MaskError):
    key = "image.edit_needs_mask"
    template = (
        "This image has no transparent pixels, so nothing is marked to change. Erase the area "
        "to change in an image editor so it becomes transparent and save it as PNG, or upload "
        "a mask too: a black image of the same size where white marks the area to change."
    )


class ImageFullyTransparent(MaskError):
    key = "image.fully_transparent"
    template = (
        "This image is transparent everywhere, so nothing of it would be kept. Erase only the "
        "area to change; to make an entirely new picture, generate one from a prompt instead."
    )
