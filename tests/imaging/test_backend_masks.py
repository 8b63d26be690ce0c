"""Our masks as Stable Diffusion servers read them: the marked area white, the rest black."""

from __future__ import annotations

import pytest

from bot.imaging import EditNeedsMask, ImageFullyTransparent
from bot.imaging.backend_masks import white_repaints
from bot.testing.images import decode_image, png_bytes


def test_the_transparent_area_becomes_white_and_the_rest_black() -> None:
    ours = png_bytes(32, 32, (10, 20, 30), hole=(8, 8, 15, 15))
    converted = decode_image(white_repaints(ours))
    assert converted.size == (32, 32) and "A" not in converted.getbands()
    grey = converted.convert("L")
    assert grey.getpixel((10, 10)) == 255 and grey.getpixel((0, 0)) == 0
    assert grey.getpixel((20, 20)) == 0


def test_a_mask_that_marks_nothing_or_everything_is_refused() -> None:
    with pytest.raises(EditNeedsMask):
        white_repaints(png_bytes(16, 16))
    with pytest.raises(ImageFullyTransparent):
        white_repaints(png_bytes(16, 16, hole=(0, 0, 15, 15)))
