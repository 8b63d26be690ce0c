"""Edits: which pixels may change, and that image and mask stay aligned pixel for pixel."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from PIL import Image, ImageChops

from bot.imaging import (
    EditNeedsMask,
    ImageFullyTransparent,
    MaskAreaLost,
    MaskMarksEverything,
    MaskMarksNothing,
    MaskNotBlackAndWhite,
    MaskSizeMismatch,
    NotAnImage,
    normalize_edit,
)
from bot.imaging.geometry import Fit
from tests.imaging.samples import decode_png, encode, noise, photo, pixel

SIZE = (300, 200)  # not square, and not a multiple of the output side
RECT = (40, 60, 100, 140)  # the area to change: left of centre, so a crop cuts part of it
_MIDDLE = [255 if v >= 128 else 0 for v in range(256)]


def picture_with_red_rect(mode: str = "RGB") -> Image.Image:
    im = Image.new(mode, SIZE, (0, 0, 0))
    im.paste((255, 0, 0), RECT)
    return im


def bw_mask() -> Image.Image:
    mask = Image.new("L", SIZE, 0)
    mask.paste(255, RECT)
    return mask


def alpha_mask() -> Image.Image:
    mask = Image.new("RGBA", SIZE, (255, 255, 255, 255))
    mask.paste((0, 0, 0, 0), RECT)
    return mask


def edited_area(mask_png: bytes) -> Image.Image:
    """255 where the API may paint: the output mask's alpha 0."""
    mask = decode_png(mask_png)
    assert mask.mode == "RGBA"
    alpha = mask.getchannel("A")
    histogram = alpha.histogram()
    assert histogram[0] + histogram[255] == alpha.width * alpha.height  # no soft edges
    return ImageChops.invert(alpha)


@pytest.mark.parametrize("fit", ["crop", "pad"])
@pytest.mark.parametrize("make_mask", [bw_mask, alpha_mask], ids=["black-and-white", "alpha"])
def test_mask_lands_on_the_same_pixels_as_the_region_it_marked(
    fit: Fit, make_mask: Callable[[], Image.Image]
) -> None:
    result = normalize_edit(
        encode(picture_with_red_rect()),
        encode(make_mask()),
        side=256,
        fit=fit,
    )
    image = decode_png(result.image.png)
    assert image.mode == "RGBA" and image.size == (256, 256)
    red = image.getchannel("R").point(_MIDDLE)
    area = edited_area(result.mask_png)
    assert area.getbbox() is not None
    assert ImageChops.difference(red, area).getbbox() is None  # identical, pixel for pixel
    assert result.mask_source == "mask"


@pytest.mark.parametrize("mask_size", [(3000, 2000), (600, 400)])
def test_alignment_holds_for_a_jpeg_decoded_at_reduced_size(mask_size: tuple[int, int]) -> None:
    # A large JPEG is decoded at 1/2 scale inside libjpeg; the PNG mask at full or 1/5 size.
    big = picture_with_red_rect().resize((3000, 2000), Image.Resampling.NEAREST)
    mask = bw_mask().resize(mask_size, Image.Resampling.NEAREST)
    result = normalize_edit(encode(big, "JPEG", quality=95), encode(mask), side=512, fit="pad")
    red_box = decode_png(result.image.png).getchannel("R").point(_MIDDLE).getbbox()
    area_box = edited_area(result.mask_png).getbbox()
    assert red_box is not None and area_box is not None
    assert all(abs(a - b) <= 1 for a, b in zip(red_box, area_box, strict=True))


def test_padding_is_opaque_and_never_edited() -> None:
    result = normalize_edit(encode(picture_with_red_rect()), encode(bw_mask()), side=320, fit="pad")
    left, top, right, bottom = result.image.content_box
    assert (left, right) == (0, 320) and top > 0 and bottom < 320
    image = decode_png(result.image.png)
    assert image.getpixel((150, top // 2)) == (0, 0, 0, 255)
    assert image.getpixel((150, (bottom + 320) // 2)) == (0, 0, 0, 255)
    area = edited_area(result.mask_png)
    assert area.crop((0, 0, 320, top)).getbbox() is None
    assert area.crop((0, bottom, 320, 320)).getbbox() is None


def test_white_marks_the_area_to_edit_in_a_mask_without_alpha() -> None:
    result = normalize_edit(encode(photo(SIZE)), encode(bw_mask()), side=256, fit="pad")
    share = (RECT[2] - RECT[0]) * (RECT[3] - RECT[1]) / (256 * 256) * (256 / 300) ** 2
    assert result.edit_fraction == pytest.approx(share, rel=0.1)


def test_a_mask_with_alpha_that_is_opaque_everywhere_is_read_as_black_and_white() -> None:
    mask = bw_mask().convert("RGBA")  # what paint programs often save
    result = normalize_edit(encode(photo(SIZE)), encode(mask), side=256, fit="pad")
    assert 0 < result.edit_fraction < 0.2


def test_a_jpeg_mask_with_compression_noise_still_works() -> None:
    result = normalize_edit(encode(photo(SIZE)), encode(bw_mask(), "JPEG", quality=70), side=256)
    assert 0 < result.edit_fraction < 0.2


@pytest.mark.parametrize(
    ("mask", "error"),
    [
        (Image.new("L", SIZE, 0), MaskMarksNothing),
        (Image.new("RGBA", SIZE, (0, 0, 0, 255)), MaskMarksNothing),
        (Image.new("L", SIZE, 255), MaskMarksEverything),
        (Image.new("RGBA", SIZE, (0, 0, 0, 0)), MaskMarksEverything),
        (photo(SIZE).convert("L").point(lambda v: 64 + v // 2), MaskNotBlackAndWhite),
    ],
    ids=["black", "opaque", "white", "transparent", "photo"],
)
def test_masks_that_mark_nothing_or_everything_are_refused(
    mask: Image.Image, error: type[Exception]
) -> None:
    with pytest.raises(error):
        normalize_edit(encode(photo(SIZE)), encode(mask), side=256)


def test_a_crop_that_cuts_away_the_marked_area_says_so() -> None:
    mask = Image.new("L", SIZE, 0)
    mask.paste(255, (0, 0, 40, 40))  # the corner, outside the centre square
    with pytest.raises(MaskAreaLost, match="fitting the image to 256x256,"):
        normalize_edit(encode(photo(SIZE)), encode(mask), side=256, fit="crop")


@pytest.mark.parametrize("mask_size", [(200, 300), (300, 196), (150, 150)])
def test_a_mask_of_another_shape_is_refused_and_the_message_names_both(
    mask_size: tuple[int, int],
) -> None:
    with pytest.raises(MaskSizeMismatch) as caught:
        normalize_edit(encode(photo(SIZE)), encode(Image.new("L", mask_size, 255)), side=256)
    width, height = mask_size
    assert str(caught.value) == (
        f"The mask is {width}x{height} pixels but the image is 300x200; a mask must have the "
        "image's size, or its shape at another size."
    )


@pytest.mark.parametrize("mask_size", [(150, 100), (900, 600), (301, 200)])
@pytest.mark.parametrize("make_mask", [bw_mask, alpha_mask], ids=["black-and-white", "alpha"])
def test_a_mask_of_the_same_shape_at_another_resolution_is_scaled_to_the_image(
    mask_size: tuple[int, int], make_mask: Callable[[], Image.Image]
) -> None:
    mask = make_mask().resize(mask_size, Image.Resampling.NEAREST)
    result = normalize_edit(encode(picture_with_red_rect()), encode(mask), side=256, fit="pad")
    red_box = decode_png(result.image.png).getchannel("R").point(_MIDDLE).getbbox()
    area_box = edited_area(result.mask_png).getbbox()  # also: alpha only 0 or 255
    assert red_box is not None and area_box is not None
    assert all(abs(a - b) <= 1 for a, b in zip(red_box, area_box, strict=True))


def test_a_mask_that_is_not_an_image_is_named_as_the_mask() -> None:
    with pytest.raises(NotAnImage) as caught:
        normalize_edit(encode(photo(SIZE)), b"not a mask at all", side=256)
    assert caught.value.subject == "mask"
    assert str(caught.value).startswith("Mask: That file isn't an image.")


def test_without_a_mask_the_transparent_pixels_are_the_area_and_alpha_is_kept() -> None:
    im = photo(SIZE).convert("RGBA")
    im.paste((0, 0, 0, 0), RECT)
    result = normalize_edit(encode(im), None, side=320, fit="pad")
    assert result.mask_source == "alpha"
    image = decode_png(result.image.png)
    assert image.mode == "RGBA"
    scale, top = 320 / SIZE[0], result.image.content_box[1]
    inside = round(70 * scale), round(100 * scale) + top  # the middle of RECT
    assert pixel(image, inside)[3] == 0
    assert edited_area(result.mask_png).getpixel(inside) == 255


def test_without_a_mask_an_opaque_image_explains_how_to_make_one() -> None:
    with pytest.raises(EditNeedsMask) as caught:
        normalize_edit(encode(photo(SIZE), "JPEG"), None, side=256)
    message = str(caught.value)
    assert "no transparent pixels" in message
    assert "Erase the area to change" in message
    assert "white marks the area to change" in message


def test_without_a_mask_an_rgba_image_with_no_transparent_pixel_is_refused_too() -> None:
    with pytest.raises(EditNeedsMask):
        normalize_edit(encode(photo(SIZE).convert("RGBA")), None, side=256)


def test_without_a_mask_a_fully_transparent_image_is_refused() -> None:
    with pytest.raises(ImageFullyTransparent):
        normalize_edit(encode(Image.new("RGBA", SIZE, (0, 0, 0, 0))), None, side=256)


def test_noise_edits_fit_under_the_limit_and_mask_follows_a_shrink() -> None:
    im = noise("RGB", (2048, 2048)).convert("RGBA")
    im.paste((0, 0, 0, 0), (0, 0, 512, 512))
    result = normalize_edit(encode(im, compress_level=0), None, side=2048)
    assert len(result.image.png) < 4_000_000 and len(result.mask_png) < 4_000_000
    side = result.image.side
    assert side < 2048 and result.image.shrunk
    assert decode_png(result.mask_png).size == (side, side)
    assert result.edit_fraction == pytest.approx(1 / 16, rel=0.02)


@pytest.mark.parametrize("make_mask", [bw_mask, alpha_mask], ids=["black-and-white", "alpha"])
def test_a_rectangle_target_scales_the_mask_with_the_picture(
    make_mask: Callable[[], Image.Image],
) -> None:
    # SIZE is 3:2, so a 3:2 target (what a GPT image model gets) is neither cropped nor padded.
    result = normalize_edit(encode(picture_with_red_rect()), encode(make_mask()), side=(480, 320))
    image = decode_png(result.image.png)
    assert image.size == (480, 320) == decode_png(result.mask_png).size
    assert result.image.content_box == (0, 0, 480, 320)
    red = image.getchannel("R").point(_MIDDLE)
    area = edited_area(result.mask_png)
    assert area.getbbox() == (64, 96, 160, 224)  # RECT scaled by 1.6
    assert ImageChops.difference(red, area).getbbox() is None


def test_a_crop_to_a_landscape_size_names_that_size_not_a_square() -> None:
    """GPT image models keep an upload's shape: the message names the size really made."""
    mask = Image.new("L", SIZE, 0)
    mask.paste(255, (0, 0, 40, 40))  # the corner, outside a 3:1 strip across the middle
    with pytest.raises(MaskAreaLost, match="fitting the image to 384x128,"):
        normalize_edit(encode(photo(SIZE)), encode(mask), side=(384, 128), fit="crop")
