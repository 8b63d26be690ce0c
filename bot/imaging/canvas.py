"""New canvases around a picture, for outpainting: zoom out, pan, make square; and a scattered
mask for a light repaint of the whole picture.

Each function takes an image file and the output's width and height (the caller picks a size
the model can make) and returns the canvas as an RGBA PNG whose new area is transparent (alpha
0), with the mask of an edit (``masks.mask_image``: alpha 0 = paint here) of the same size.
The colour under the new area is the picture stretched and blurred over the whole canvas, so a
backend that starts from those pixels (Stable Diffusion's inpainting) starts from the
picture's own colours rather than black; the OpenAI models only see the area as transparent.

Pure and synchronous (Pillow): run it in ``ImageWorker``. Nothing here knows providers or the
actions that use it: it gets sizes, factors and sides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from PIL import Image, ImageChops, ImageFilter

from bot.imaging import masks
from bot.imaging.decode import load, open_image, to_rgb
from bot.imaging.encode import write_png
from bot.imaging.geometry import RESAMPLE, plan
from bot.imaging.limits import DEFAULT_LIMITS, ImageLimits

Side = Literal["left", "right", "up", "down"]
SIDES: tuple[Side, ...] = ("left", "right", "up", "down")
#: Blur of the picture stretched under the new area: enough to carry colours, not shapes.
UNDERPAINT_BLUR = 24
UNDERPAINT_STEP = 8
#: A pan's new band is at least this share of the canvas along the pan: where the model's
#: size cannot grow that way (square-only models), the picture moves over by that much.
MIN_PAN_BAND = 0.25
#: Cells per side of :func:`scattered_mask`'s grid; one cell in four is repainted.
SCATTER_CELLS = 8


@dataclass(frozen=True, slots=True)
class Canvas:
    """The picture on its new canvas, and the edit mask that marks the new area."""

    #: RGBA PNG: the picture where it lies, alpha 0 elsewhere.
    png: bytes = field(repr=False)
    #: RGBA PNG of the same size: alpha 0 where the model paints (the API's convention).
    mask_png: bytes = field(repr=False)
    size: tuple[int, int]
    #: Left, top, right, bottom of the picture on the canvas (may reach past its edges).
    content_box: tuple[int, int, int, int]


def zoom_out(
    data: bytes,
    *,
    canvas: tuple[int, int],
    factor: float,
    limits: ImageLimits = DEFAULT_LIMITS,
) -> Canvas:
    """The picture fitted to ``canvas``, shrunk ``factor`` times and centred: a new border."""
    if factor <= 1:
        raise ValueError(f"a zoom out shrinks the picture: factor {factor} must be above 1")
    picture = _decoded(data, limits)
    fitted = plan(picture.size, canvas, "pad").size
    size = (max(1, round(fitted[0] / factor)), max(1, round(fitted[1] / factor)))
    offset = ((canvas[0] - size[0]) // 2, (canvas[1] - size[1]) // 2)
    return _place(picture, canvas, size, offset)


def pan(
    data: bytes,
    *,
    canvas: tuple[int, int],
    side: Side,
    min_band: float = MIN_PAN_BAND,
    limits: ImageLimits = DEFAULT_LIMITS,
) -> Canvas:
    """The picture against the edge opposite ``side``, a new band on ``side``.

    The picture fills the canvas across the pan (its height for left/right); the band is what
    the canvas has beyond it, but at least ``min_band`` of the canvas: where the canvas is no
    wider than the picture, the picture moves over and loses that much on the far edge.
    """
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, not {side!r}")
    picture = _decoded(data, limits)
    (width, height), (canvas_w, canvas_h) = picture.size, canvas
    if side in ("left", "right"):
        size = (max(1, round(width * canvas_h / height)), canvas_h)
        band = max(canvas_w - size[0], round(canvas_w * min_band))
        x = band if side == "left" else canvas_w - band - size[0]
        offset = (x, 0)
    else:
        size = (canvas_w, max(1, round(height * canvas_w / width)))
        band = max(canvas_h - size[1], round(canvas_h * min_band))
        y = band if side == "up" else canvas_h - band - size[1]
        offset = (0, y)
    return _place(picture, canvas, size, offset)


def make_square(
    data: bytes, *, canvas: tuple[int, int], limits: ImageLimits = DEFAULT_LIMITS
) -> Canvas:
    """The whole picture centred on ``canvas`` (a square), the rest new."""
    picture = _decoded(data, limits)
    placement = plan(picture.size, canvas, "pad")
    return _place(picture, canvas, placement.size, placement.offset)


def scattered_mask(size: tuple[int, int], cells: int = SCATTER_CELLS) -> bytes:
    """A mask (alpha 0 = paint) marking one cell in four of a ``cells`` x ``cells`` grid.

    For a model whose edits repaint only what a mask marks (dall-e-2): a light variation that
    keeps three quarters of the picture as it is and redraws the rest in its context.
    """
    width, height = size
    edit = Image.new("L", size, masks.KEEP)
    for row in range(0, cells, 2):
        for column in range(0, cells, 2):
            box = (
                column * width // cells,
                row * height // cells,
                (column + 1) * width // cells,
                (row + 1) * height // cells,
            )
            edit.paste(masks.EDIT, box)
    masks.check_marked(edit)
    return write_png(masks.mask_image(edit))


def _decoded(data: bytes, limits: ImageLimits) -> Image.Image:
    opened = open_image(data, limits)
    im, _ = load(opened, max_reduce=1)
    picture = to_rgb(im, keep_alpha=False)
    if picture is not im:
        im.close()
    return picture


def _place(
    picture: Image.Image,
    canvas: tuple[int, int],
    size: tuple[int, int],
    offset: tuple[int, int],
) -> Canvas:
    """``picture`` resized to ``size`` at ``offset`` on a transparent ``canvas``, underpainted."""
    resized = picture.resize(size, RESAMPLE, reducing_gap=3.0)
    # Blurred small and stretched: the same colours at a fraction of a full-size blur's cost.
    small = (max(1, canvas[0] // UNDERPAINT_STEP), max(1, canvas[1] // UNDERPAINT_STEP))
    under = picture.resize(small, RESAMPLE, reducing_gap=3.0)
    under = under.filter(ImageFilter.GaussianBlur(UNDERPAINT_BLUR / UNDERPAINT_STEP))
    under = under.resize(canvas, Image.Resampling.BILINEAR)
    under.paste(resized, offset)
    box = (offset[0], offset[1], offset[0] + size[0], offset[1] + size[1])
    edit = Image.new("L", canvas, masks.EDIT)
    edit.paste(masks.KEEP, box)
    masks.check_marked(edit)
    under.putalpha(ImageChops.invert(edit))
    return Canvas(
        png=write_png(under),
        mask_png=write_png(masks.mask_image(edit)),
        size=canvas,
        content_box=box,
    )
