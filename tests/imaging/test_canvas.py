"""The canvases of Zoom Out, Pan and Make Square, and the scattered mask of a light repaint."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from bot.imaging import canvas
from bot.imaging.canvas import Canvas


def picture(size: tuple[int, int], colour: tuple[int, int, int] = (200, 40, 10)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def opaque_box(data: bytes) -> tuple[int, int, int, int] | None:
    return opened(data).getchannel("A").point(lambda v: 255 if v else 0).getbbox()


def check_aligned(made: Canvas) -> None:
    """Image and mask mark the same new area: transparent in both, nowhere else."""
    image, mask = opened(made.png), opened(made.mask_png)
    assert image.mode == mask.mode == "RGBA" and image.size == mask.size == made.size
    assert image.getchannel("A").tobytes() == mask.getchannel("A").tobytes()
    histogram = image.getchannel("A").histogram()
    assert {value for value, count in enumerate(histogram) if count} == {0, 255}


def test_zoom_out_shrinks_and_centres_the_picture() -> None:
    made = canvas.zoom_out(picture((1024, 1024)), canvas=(1024, 1024), factor=2)
    check_aligned(made)
    assert made.content_box == opaque_box(made.png) == (256, 256, 768, 768)
    assert opened(made.png).getpixel((512, 512)) == (200, 40, 10, 255)


def test_zoom_out_fits_another_shape_before_shrinking() -> None:
    made = canvas.zoom_out(picture((600, 400)), canvas=(1536, 1024), factor=1.5)
    check_aligned(made)
    assert made.content_box == (256, 170, 1280, 853)  # 1024x683, centred


def test_zoom_out_must_shrink() -> None:
    with pytest.raises(ValueError, match="above 1"):
        canvas.zoom_out(picture((64, 64)), canvas=(64, 64), factor=1)


def test_the_new_area_is_underpainted_with_the_pictures_colours() -> None:
    made = canvas.zoom_out(picture((256, 256)), canvas=(256, 256), factor=2)
    red, green, blue, alpha = opened(made.png).getpixel((2, 2))
    assert alpha == 0 and abs(red - 200) < 8 and abs(green - 40) < 8 and abs(blue - 10) < 8


@pytest.mark.parametrize(
    ("side", "box"),
    [
        ("right", (0, 0, 1024, 1024)),
        ("left", (512, 0, 1536, 1024)),
    ],
)
def test_a_pan_on_a_wider_canvas_leaves_the_band_on_its_side(
    side: canvas.Side, box: tuple[int, int, int, int]
) -> None:
    made = canvas.pan(picture((1024, 1024)), canvas=(1536, 1024), side=side)
    check_aligned(made)
    assert opaque_box(made.png) == box


@pytest.mark.parametrize(
    ("side", "box"),
    [
        ("up", (0, 64, 256, 256)),
        ("down", (0, 0, 256, 192)),
        ("left", (64, 0, 256, 256)),
        ("right", (0, 0, 192, 256)),
    ],
)
def test_a_pan_on_a_canvas_no_larger_moves_the_picture_over_by_the_band(
    side: canvas.Side, box: tuple[int, int, int, int]
) -> None:
    made = canvas.pan(picture((256, 256)), canvas=(256, 256), side=side)
    check_aligned(made)
    assert opaque_box(made.png) == box


def test_a_pan_scales_the_picture_across_the_pan() -> None:
    made = canvas.pan(picture((512, 256)), canvas=(1024, 1024), side="down")
    check_aligned(made)
    assert made.content_box == (0, 0, 1024, 512)  # a 512-px band below


def test_a_pan_refuses_an_unknown_side() -> None:
    with pytest.raises(ValueError, match="side"):
        canvas.pan(picture((64, 64)), canvas=(64, 64), side="diagonal")  # type: ignore[arg-type]


def test_make_square_centres_a_landscape_picture_between_two_bands() -> None:
    made = canvas.make_square(picture((1536, 1024)), canvas=(1024, 1024))
    check_aligned(made)
    assert opaque_box(made.png) == (0, 170, 1024, 853)


def test_make_square_of_a_square_picture_has_nothing_to_paint() -> None:
    from bot.imaging import MaskMarksNothing

    with pytest.raises(MaskMarksNothing):
        canvas.make_square(picture((512, 512)), canvas=(512, 512))


def test_the_scattered_mask_marks_one_cell_in_four() -> None:
    mask = opened(canvas.scattered_mask((256, 256))).getchannel("A")
    assert mask.histogram()[0] == 256 * 256 // 4
    assert mask.getpixel((0, 0)) == 0 and mask.getpixel((32, 0)) == 255
    assert mask.getpixel((0, 32)) == 255 and mask.getpixel((64, 64)) == 0
