"""Which pixels an edit may change, from a mask upload or from the picture's own transparency.

Internally the area is an "edit map": an 8-bit greyscale image where 255 means "change this"
and 0 "keep this". It goes through exactly the same geometry as the picture (``geometry``),
is cut back to pure 0/255 at the middle (so a soft or resampled edge lands where a person sees
it), and leaves as the API wants it: an RGBA PNG where alpha 0 marks the area to edit.

Reading a mask upload:

* With transparency (an alpha band or a transparent palette entry): alpha below 128 is the area
  to edit, the API's own convention ("fully transparent areas"), widened to "mostly
  transparent" so a soft eraser edge counts where it looks erased. A mask whose alpha is opaque
  everywhere is read as black and white instead; paint programs often save those with alpha.
* Without transparency: white marks the area to edit and black the area to keep, as in most
  inpainting tools. Grey counts as white from the middle up. A mask that is mostly mid-grey is
  refused, because that is almost always the photo uploaded twice, not a mask.

A mask that marks nothing, or everything, is refused: the first would send a paid request that
changes nothing, the second is a new picture, which generation does better and cheaper.
"""

from __future__ import annotations

from PIL import Image, ImageChops

from bot.imaging.decode import WIDE_MODES, has_alpha, to_8bit_gray
from bot.imaging.errors import (
    EditNeedsMask,
    ImageFullyTransparent,
    MaskAreaLost,
    MaskMarksEverything,
    MaskMarksNothing,
    MaskNotBlackAndWhite,
)

EDIT = 255
KEEP = 0
_MIDDLE = 128
_BINARIZE = [EDIT if v >= _MIDDLE else KEEP for v in range(256)]
_TRANSPARENT_IS_EDIT = [EDIT if v < _MIDDLE else KEEP for v in range(256)]
#: Share of pixels between dark and light grey above which a "mask" is taken for a photo.
#: Anti-aliased or JPEG-compressed black-and-white masks stay far below it.
MAX_GREY_SHARE = 0.25
_GREYS = slice(64, 192)


def edit_map_from_mask(mask: Image.Image) -> Image.Image:
    """The edit map (255 = change) that a mask upload describes; see the module docstring."""
    if has_alpha(mask):
        alpha = _alpha(mask)
        low, _ = alpha.getextrema()
        if isinstance(low, int) and low < 255:
            edit = alpha.point(_TRANSPARENT_IS_EDIT)
            check_marked(edit)
            return edit
    grey = to_8bit_gray(mask) if mask.mode in WIDE_MODES else mask.convert("L")
    histogram = grey.histogram()
    if sum(histogram[_GREYS]) > MAX_GREY_SHARE * grey.width * grey.height:
        raise MaskNotBlackAndWhite()
    edit = grey.point(_BINARIZE)
    check_marked(edit)
    return edit


def edit_map_from_alpha(im: Image.Image) -> Image.Image:
    """The edit map from the picture's own transparent pixels, for an edit without a mask."""
    if not has_alpha(im):
        raise EditNeedsMask()
    edit = _alpha(im).point(_TRANSPARENT_IS_EDIT)
    low, high = edit.getextrema()
    if high == KEEP:
        raise EditNeedsMask()
    if low == EDIT:
        raise ImageFullyTransparent()
    return edit


def check_marked(edit: Image.Image) -> None:
    low, high = edit.getextrema()
    if high == KEEP:
        raise MaskMarksNothing()
    if low == EDIT:
        raise MaskMarksEverything()


def binarize(soft: Image.Image) -> Image.Image:
    """A resampled edit map back to pure 0/255, cut at the middle like the picture's edges."""
    return soft.point(_BINARIZE)


def check_survived(edit: Image.Image) -> None:
    """After fitting: the marked area may have been cropped away or shrunk to nothing."""
    low, high = edit.getextrema()
    if high == KEEP:
        raise MaskAreaLost(width=edit.width, height=edit.height)
    if low == EDIT:
        raise MaskMarksEverything()


def mask_image(edit: Image.Image) -> Image.Image:
    """The API's mask: black RGBA, transparent where the edit map says change."""
    black = Image.new("L", edit.size, 0)
    return Image.merge("RGBA", (black, black, black, ImageChops.invert(edit)))


def edit_fraction(edit: Image.Image) -> float:
    """Share of the square that will be repainted (for "editing 23% of the image")."""
    histogram = edit.histogram()
    return histogram[EDIT] / (edit.width * edit.height)


def _alpha(im: Image.Image) -> Image.Image:
    if "A" in im.getbands():
        return im.getchannel("A")
    return im.convert("RGBA").getchannel("A")
