from __future__ import annotations

import pytest
from PIL import Image

from bot.imaging.geometry import apply, plan
from tests.imaging.samples import BLUE, RED, close_to, halves, pixel


def test_crop_keeps_the_centre_square() -> None:
    placement = plan((300, 200), 100, "crop")
    assert placement.box == (50.0, 0.0, 250.0, 200.0)
    assert placement.content_box == (0, 0, 100, 100)


@pytest.mark.parametrize(
    ("size", "content_box"),
    [((300, 200), (0, 16, 100, 83)), ((200, 300), (16, 0, 83, 100))],
)
def test_pad_fits_the_whole_picture_in_the_middle(
    size: tuple[int, int], content_box: tuple[int, int, int, int]
) -> None:
    placement = plan(size, 100, "pad")
    assert placement.box == (0.0, 0.0, float(size[0]), float(size[1]))
    assert placement.content_box == content_box


def test_squares_need_neither() -> None:
    assert plan((50, 50), 100, "pad") == plan((50, 50), 100, "crop")


def test_max_reduce_allows_the_nearest_power_of_two_at_most_a_root_2_below_the_output() -> None:
    assert plan((4000, 3000), 1024, "crop").max_reduce == 4  # 3000 px kept: 750 px -> 1024
    assert plan((4000, 3000), 1024, "pad").max_reduce == 5  # 4000 px kept: 1/4 is 1000 px
    assert plan((2800, 2800), 1024, "crop").max_reduce == 3  # 1/4 would be 700 px: too few
    assert plan((1400, 1400), 1024, "crop").max_reduce == 1  # 1/2 would be 700 px: too few
    assert plan((100, 100), 1024, "crop").max_reduce == 1  # upscaling


def test_unknown_fit_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="fit"):
        plan((10, 10), 16, "stretch")  # type: ignore[arg-type]


def test_apply_crop_and_pad() -> None:
    im = halves((300, 100))  # red | blue
    cropped = apply(im, plan(im.size, 64, "crop"))
    assert cropped.size == (64, 64)
    # The centre third straddles the middle: red on the left, blue on the right.
    assert close_to(cropped.getpixel((2, 32)), RED)
    assert close_to(cropped.getpixel((61, 32)), BLUE)
    padded = apply(im, plan(im.size, 60, "pad"), fill=(0, 0, 0))
    assert padded.getpixel((30, 2)) == (0, 0, 0)  # bar
    assert close_to(padded.getpixel((5, 30)), RED)


def test_apply_maps_a_reduced_source_to_the_same_square() -> None:
    im = halves((400, 200))
    placement = plan(im.size, 64, "crop")
    half = im.resize((200, 100), Image.Resampling.BOX)
    full_result = apply(im, placement)
    half_result = apply(half, placement, scale=2.0)
    for x in (5, 30, 33, 58):
        assert close_to(half_result.getpixel((x, 32)), pixel(full_result, (x, 32)), 40)


def test_a_rectangle_target_of_the_same_shape_needs_neither_crop_nor_padding() -> None:
    for fit in ("crop", "pad"):
        placement = plan((3000, 2000), (1536, 1024), fit)  # type: ignore[arg-type]
        assert placement.box == (0.0, 0.0, 3000.0, 2000.0)
        assert placement.content_box == (0, 0, 1536, 1024)


def test_a_rectangle_target_of_another_shape_crops_or_pads_to_it() -> None:
    crop = plan((4000, 3000), (1536, 1024), "crop")  # 4:3 into 3:2: top and bottom go
    assert crop.box == (
        0.0,
        pytest.approx(166.67, abs=0.01),
        4000.0,
        pytest.approx(2833.33, abs=0.01),
    )
    assert crop.content_box == (0, 0, 1536, 1024)
    pad = plan((4000, 3000), (1536, 1024), "pad")  # narrow bars left and right
    assert pad.content_box == (85, 0, 1450, 1024)


def test_a_rectangle_canvas_is_filled_to_its_edges() -> None:
    im = halves((600, 400))
    out = apply(im, plan(im.size, (480, 320), "pad"))
    assert out.size == (480, 320)
    assert close_to(pixel(out, (0, 0)), RED) and close_to(pixel(out, (479, 319)), BLUE)
