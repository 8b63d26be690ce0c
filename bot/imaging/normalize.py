"""From what a member uploaded to what the Images API accepts: a PNG of the target shape, < 4 MB.

The target is a square side (dall-e-2 takes only squares) or a width and height (GPT image
models take landscape and portrait inputs too); ``bot.generation`` chooses it from the model.

Two entry points, both synchronous and meant to run in ``ImageWorker``'s threads:

* ``normalize_image`` for a picture sent on its own (variations, reference images). It comes
  out as RGB with transparency flattened onto white unless ``keep_alpha``: a transparent
  picture sent to an edit endpoint (the way GPT image models make variations) would have its
  transparent part repainted, and dall-e-2 variations gain nothing from alpha.
* ``normalize_edit`` for an edit: the picture keeps its transparency and always comes out as
  RGBA (dall-e-2 refuses RGB edit images), with a mask PNG of the same size where alpha 0 marks
  the area to change. The mask is the member's second upload or, without one, the picture's own
  transparent pixels.

Both report what was done (final size, whether colours were reduced, where the picture sits in
the output) so the caller can tell the member and crop padding off the result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from PIL import Image

from bot.imaging import masks
from bot.imaging.decode import OpenedImage, load, open_image, to_rgb
from bot.imaging.encode import encode_under, pixels_intact, plain_png, write_png
from bot.imaging.errors import ImageError, MaskSizeMismatch
from bot.imaging.geometry import (
    DEFAULT_EDIT_FIT,
    DEFAULT_FIT,
    Fit,
    Target,
    apply,
    as_size,
    plan,
    scale_box,
    shrink,
)
from bot.imaging.limits import DEFAULT_LIMITS, ImageLimits

#: Output sides accepted: multiples of 16 (what every model that takes sizes asks for).
MIN_SIDE = 16
MAX_SIDE = 4096
#: How far a mask's aspect ratio may be from the picture's (1 %: rounding of a scaled export).
MASK_SHAPE_TOLERANCE = 0.01


@dataclass(frozen=True, slots=True)
class NormalizedImage:
    """A PNG ready to upload, and what it took to get there."""

    png: bytes = field(repr=False)
    #: Width and height; smaller than ``requested_size`` when the PNG had to shrink to fit.
    size: tuple[int, int]
    requested_size: tuple[int, int]
    #: Width and height of the upload as displayed (EXIF rotation applied).
    source_size: tuple[int, int]
    #: Pillow's name for the upload's format: "JPEG", "PNG", "WEBP", "GIF", "MPO", ...
    source_format: str
    #: Colours were reduced to 256 to get under the byte limit.
    quantized: bool
    #: "RGB" or "RGBA": the colour type of ``png``.
    mode: str
    fit: Fit
    #: Left, top, right, bottom of the picture in the output; the rest is padding.
    content_box: tuple[int, int, int, int]

    @property
    def side(self) -> int:
        """The long side (a square's side)."""
        return max(self.size)

    @property
    def requested_side(self) -> int:
        return max(self.requested_size)

    @property
    def shrunk(self) -> bool:
        return self.side < self.requested_side


@dataclass(frozen=True, slots=True)
class EditInputs:
    """The two files of an edit request, aligned pixel for pixel."""

    #: RGBA, transparency kept.
    image: NormalizedImage
    #: RGBA PNG of the same size: alpha 0 where the model may paint, 255 elsewhere.
    mask_png: bytes = field(repr=False)
    #: Where the area came from: the member's mask upload or the picture's transparency.
    mask_source: Literal["mask", "alpha"]
    #: Share of the output that will be repainted, 0-1.
    edit_fraction: float


def normalize_image(
    data: bytes,
    *,
    side: Target,
    fit: Fit = DEFAULT_FIT,
    keep_alpha: bool = False,
    limits: ImageLimits = DEFAULT_LIMITS,
) -> NormalizedImage:
    """``data`` as a PNG of ``side`` (a square's side, or width and height) under the limit.

    RGB unless ``keep_alpha`` and the upload has transparency (then RGBA with transparent
    padding). Raises an ``ImageError`` subclass with a member-facing message.
    """
    size = _checked_size(side)
    opened = open_image(data, limits)
    placement = plan(opened.size, size, fit)
    mode = _sendable_as_is(data, size, keep_alpha, limits)
    if mode is not None:
        opened.image.close()
        return NormalizedImage(
            png=data,
            size=size,
            requested_size=size,
            source_size=opened.size,
            source_format=opened.format,
            quantized=False,
            mode=mode,
            fit=fit,
            content_box=placement.content_box,
        )
    im, scale = load(opened, max_reduce=placement.max_reduce)
    rgb = to_rgb(im, keep_alpha=keep_alpha)
    fill = (0, 0, 0, 0) if rgb.mode == "RGBA" else (0, 0, 0)
    fitted = apply(rgb, placement, scale=scale, fill=fill)
    im.close()  # the decoded upload (12 MB for a phone photo), before encoding needs more
    rgb.close()
    encoded = encode_under(fitted, limits.output_max_bytes)
    return NormalizedImage(
        png=encoded.png,
        size=encoded.size,
        requested_size=size,
        source_size=opened.size,
        source_format=opened.format,
        quantized=encoded.quantized,
        mode=fitted.mode,
        fit=fit,
        content_box=scale_box(placement.content_box, encoded.side / max(size)),
    )


def normalize_edit(
    image: bytes,
    mask: bytes | None,
    *,
    side: Target,
    fit: Fit = DEFAULT_EDIT_FIT,
    limits: ImageLimits = DEFAULT_LIMITS,
) -> EditInputs:
    """The picture and mask of an edit as two aligned RGBA PNGs of ``side`` (see above).

    ``mask`` must have the picture's size, or its shape (``MASK_SHAPE_TOLERANCE``) at another
    resolution, then it is scaled to the picture; white (or transparent) marks the area to change.
    Without it the picture's transparent pixels are the area, and a picture without any is
    refused with a message explaining how to make one. Padding is opaque and never edited.
    """
    size = _checked_size(side)
    opened = open_image(image, limits)
    opened_mask = open_mask(mask, opened, limits) if mask is not None else None
    placement = plan(opened.size, size, fit)
    im, scale = load(opened, max_reduce=placement.max_reduce)

    if opened_mask is None:
        edit = masks.edit_map_from_alpha(im)
        edit_scale = scale
    else:
        try:
            mask_im, edit_scale = load(opened_mask, max_reduce=placement.max_reduce)
        except ImageError as exc:
            raise exc.about("mask") from None
        edit = masks.edit_map_from_mask(mask_im)
        if opened_mask.size != opened.size:
            # Same shape, other resolution: the 0/255 map is scaled onto the decoded picture.
            edit = edit.resize(im.size, Image.Resampling.NEAREST)
            edit_scale = scale

    picture = to_rgb(im, keep_alpha=True)
    fill = (0, 0, 0, 255) if picture.mode == "RGBA" else (0, 0, 0)
    fitted = apply(picture, placement, scale=scale, fill=fill)
    if fitted.mode != "RGBA":
        fitted = fitted.convert("RGBA")  # after resizing: no alpha to premultiply
    soft = apply(edit, placement, scale=edit_scale, fill=masks.KEEP)
    hard = masks.binarize(soft)
    masks.check_survived(hard)

    encoded = encode_under(fitted, limits.output_max_bytes)
    if encoded.size != size:
        hard = masks.binarize(shrink(soft, encoded.size))
        masks.check_survived(hard)

    normalized = NormalizedImage(
        png=encoded.png,
        size=encoded.size,
        requested_size=size,
        source_size=opened.size,
        source_format=opened.format,
        quantized=encoded.quantized,
        mode="RGBA",
        fit=fit,
        content_box=scale_box(placement.content_box, encoded.side / max(size)),
    )
    return EditInputs(
        image=normalized,
        mask_png=write_png(masks.mask_image(hard)),
        mask_source="alpha" if opened_mask is None else "mask",
        edit_fraction=masks.edit_fraction(hard),
    )


def open_mask(mask: bytes, opened: OpenedImage, limits: ImageLimits) -> OpenedImage:
    """The mask's header, which must have the picture's size or its shape; nothing is decoded.

    One rule for the check before queueing (``bot.discord.generate``) and the edit itself: a
    mask saved at another resolution (a paint app's export, a phone screenshot) is scaled, but
    one of another shape would mark the wrong pixels wherever it was stretched.
    """
    try:
        opened_mask = open_image(mask, limits, check_shape=False)
    except ImageError as exc:
        raise exc.about("mask") from None
    (mask_w, mask_h), (image_w, image_h) = opened_mask.size, opened.size
    if abs(mask_w * image_h - image_w * mask_h) > MASK_SHAPE_TOLERANCE * image_w * mask_h:
        raise MaskSizeMismatch(
            mask_width=mask_w, mask_height=mask_h, image_width=image_w, image_height=image_h
        )
    return opened_mask


def _sendable_as_is(
    data: bytes, size: tuple[int, int], keep_alpha: bool, limits: ImageLimits
) -> str | None:
    """The mode of a PNG that encoding again would only reproduce (see ``plain_png``), else None.

    A file that is not whole goes the usual way, where decoding it refuses it.
    """
    plain = plain_png(data)
    if plain is None or len(data) >= limits.output_max_bytes:
        return None
    width, height, mode = plain
    if (width, height) != size or (mode == "RGBA" and not keep_alpha):
        return None
    return mode if pixels_intact(data, width, height, mode) else None


def _checked_size(side: Target) -> tuple[int, int]:
    size = as_size(side)
    for length in size:
        if not MIN_SIDE <= length <= MAX_SIDE or length % 16:
            raise ValueError(
                f"each side must be a multiple of 16 from {MIN_SIDE} to {MAX_SIDE}: {size}"
            )
    return size
