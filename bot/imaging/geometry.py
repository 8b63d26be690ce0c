"""How a picture of any shape becomes the target shape, as one plan applied to image and mask.

The target is a square for models that need one (dall-e-2) and a rectangle near the upload's
own shape for models that accept it (``bot.generation.input_size`` decides); the math is the same.

The plan (``Placement``) is computed once from the displayed source size and then applied to
every layer (the picture, the mask), so an edit mask lands on exactly the pixels it marked. It
works in source coordinates with fractional boxes, which also keeps a JPEG that was decoded at
half size (``decode.load``) aligned with a mask decoded at full size.

Two ways to fit a picture of another shape (``Fit``):

* ``"crop"`` keeps the centre region of the target's shape. Default for variations and
  reference images: padding bars would be treated as part of the picture, so the model
  reproduces them as borders (or paints odd content into them), and the subject of a photo is
  usually in the middle.
* ``"pad"`` fits the whole picture and fills the rest. Default for edits: the member marked
  exact pixels to change, and a crop could cut away the marked area or the parts meant to stay.
  The bars are opaque and marked "keep" in the mask, and ``content_box`` tells the caller where
  the picture lies, so the bars can be cut off the result again.

Resizing uses bicubic with Pillow's ``reducing_gap``: a cheap integer box reduction first when
the source is much larger, then bicubic for the rest, which its docs call indistinguishable
from a full resample at 3.0. A JPEG already reduced inside the DCT (``scale`` > 1) is finished
with bilinear instead, whichever way the rest goes: the DCT reduction dominates the error, and
bicubic's wider kernel costs half as much again (on the bench photo, 40.6 dB PSNR against a
full-decode Lanczos reference versus 41.0 dB for bicubic when enlarging from 1/4, 20.6 versus
21.9 dB on a photo of small print; 44.5 versus 45.2 dB when shrinking from 1/2).

How far the DCT may reduce (``Placement.max_reduce``): to the power of two nearest the reduction
needed, so the decoded picture may be up to ``MAX_DRAFT_UPSCALE`` (the square root of 2) smaller
than the output; the resize after the DCT is then always within that factor either way. A 4:3
12 MP photo cropped to 1024x1024 is decoded at 1/4 (its 750 px centre enlarged 1.37x) instead of
1/2 (1500 px, shrunk 1.46x): less to decode (3 MB of pixels instead of 12), less to resize,
fewer fresh pages. What is lost is detail finer than 750 px across: the bench photo is 1.2 levels
of 255 from the 1/2 output on average, 40.6 dB PSNR against the full-decode Lanczos reference
instead of 44.5, and a photo of small print comes out softer (14 px text still legible; 20.6 dB
instead of 27.4). The backends redraw a picture from what they are sent rather than copy it.
``bench/normalize.py`` measures both rules side by side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from PIL import Image

Fit = Literal["crop", "pad"]
#: Width and height of an output; a plain int means a square of that side.
Target = int | tuple[int, int]

#: For variations and reference images: see the module docstring.
DEFAULT_FIT: Fit = "crop"
#: For edits: see the module docstring.
DEFAULT_EDIT_FIT: Fit = "pad"
FITS: tuple[Fit, ...] = ("crop", "pad")

RESAMPLE = Image.Resampling.BICUBIC
RESAMPLE_AFTER_DRAFT = Image.Resampling.BILINEAR
REDUCING_GAP = 3.0
#: How much smaller than the output a JPEG may be decoded: see the module docstring.
MAX_DRAFT_UPSCALE = math.sqrt(2)


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a source picture lands in the output canvas."""

    #: Width and height of the output.
    canvas: tuple[int, int]
    #: Region of the (upright) source that is kept, in source pixels; may be fractional.
    box: tuple[float, float, float, float]
    #: Size that region is resized to.
    size: tuple[int, int]
    #: Where the resized region is placed in the square (non-zero only when padding).
    offset: tuple[int, int]

    @property
    def content_box(self) -> tuple[int, int, int, int]:
        """Left, top, right, bottom of the picture inside the canvas; the rest is padding."""
        x, y = self.offset
        return (x, y, x + self.size[0], y + self.size[1])

    @property
    def max_reduce(self) -> int:
        """How much the source may shrink before resizing: up to ``MAX_DRAFT_UPSCALE`` below
        the output resolution, so the nearest power of two fits (see the module docstring)."""
        box_w, box_h = self.box[2] - self.box[0], self.box[3] - self.box[1]
        needed = min(box_w / self.size[0], box_h / self.size[1])
        return max(1, math.floor(needed * MAX_DRAFT_UPSCALE))


def plan(source_size: tuple[int, int], target: Target, fit: Fit) -> Placement:
    """The placement of a ``source_size`` picture in a ``target`` canvas."""
    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, not {fit!r}")
    canvas = as_size(target)
    (width, height), (canvas_w, canvas_h) = source_size, canvas
    wider = width * canvas_h > height * canvas_w
    if fit == "crop" or width * canvas_h == height * canvas_w:
        if wider:
            kept = (height * canvas_w / canvas_h, float(height))
        else:
            kept = (float(width), width * canvas_h / canvas_w)
        left, top = (width - kept[0]) / 2, (height - kept[1]) / 2
        return Placement(canvas, (left, top, left + kept[0], top + kept[1]), canvas, (0, 0))
    if wider:
        inner = (canvas_w, max(1, round(canvas_w * height / width)))
    else:
        inner = (max(1, round(canvas_h * width / height)), canvas_h)
    offset = ((canvas_w - inner[0]) // 2, (canvas_h - inner[1]) // 2)
    return Placement(canvas, (0.0, 0.0, float(width), float(height)), inner, offset)


def as_size(target: Target) -> tuple[int, int]:
    return (target, target) if isinstance(target, int) else target


def apply(
    im: Image.Image,
    placement: Placement,
    *,
    scale: float = 1.0,
    fill: float | tuple[int, ...] = 0,
) -> Image.Image:
    """``im`` fitted as planned; ``scale`` is how much smaller ``im`` is than the source."""
    box = placement.box
    if scale != 1.0:
        box = (box[0] / scale, box[1] / scale, box[2] / scale, box[3] / scale)
    resample = RESAMPLE_AFTER_DRAFT if scale > 1 else RESAMPLE
    resized = im.resize(placement.size, resample, box=box, reducing_gap=REDUCING_GAP)
    if placement.size == placement.canvas:
        return resized
    canvas = Image.new(im.mode, placement.canvas, fill)
    canvas.paste(resized, placement.offset)
    return canvas


def shrink(im: Image.Image, target: Target) -> Image.Image:
    """An output made smaller (when its PNG is too big); image and mask use the same call."""
    return im.resize(as_size(target), RESAMPLE, reducing_gap=REDUCING_GAP)


def shrunk_size(size: tuple[int, int], long_side: int) -> tuple[int, int]:
    """``size`` scaled so its long side is ``long_side``, keeping its shape."""
    width, height = size
    factor = long_side / max(width, height)
    return (max(1, round(width * factor)), max(1, round(height * factor)))


def scale_box(box: tuple[int, int, int, int], factor: float) -> tuple[int, int, int, int]:
    left, top, right, bottom = box
    return (
        round(left * factor),
        round(top * factor),
        round(right * factor),
        round(bottom * factor),
    )
