"""normalize_image end to end: always a valid square PNG of the requested side, under 4 MB."""

from __future__ import annotations

import pytest
from PIL import Image, ImageChops, ImageStat

from bot.imaging import (
    ImageCorrupt,
    ImageTooManyPixels,
    NormalizedImage,
    normalize_image,
)
from bot.imaging.geometry import Fit
from bot.imaging.limits import ImageLimits
from bot.testing.images import decode_image, photo_jpeg
from tests.imaging.samples import (
    BLUE,
    RED,
    close_to,
    decode_png,
    encode,
    halves,
    noise,
    photo,
    pixel,
    png_header_only,
)

LIMIT = 4_000_000


def check_square(result: NormalizedImage, side: int) -> Image.Image:
    assert len(result.png) < LIMIT
    im = decode_png(result.png)
    assert im.size == (side, side) == (result.side, result.side)
    assert im.mode == result.mode
    return im


@pytest.mark.parametrize("side", [256, 512, 1024])
@pytest.mark.parametrize("fit", ["crop", "pad"])
@pytest.mark.parametrize("size", [(640, 480), (480, 640), (500, 500), (40, 90)])
def test_output_is_always_a_png_square_of_the_requested_side(
    side: int, fit: Fit, size: tuple[int, int]
) -> None:
    result = normalize_image(encode(photo(size), "JPEG"), side=side, fit=fit)
    check_square(result, side)
    assert result.source_size == size
    assert result.source_format == "JPEG"
    assert not result.quantized and not result.shrunk


def test_a_12_megapixel_photo_keeps_its_layout() -> None:
    # Decoded at reduced size inside libjpeg; the centre crop must still be the centre.
    data = encode(halves((4000, 3000)), "JPEG", quality=90)
    im = check_square(normalize_image(data, side=1024), 1024)
    assert close_to(im.getpixel((100, 512)), RED)
    assert close_to(im.getpixel((924, 512)), BLUE)


def test_a_photo_decoded_below_the_output_size_still_looks_like_the_photo() -> None:
    """A 4:3 photo cropped to a square is decoded at 1/4 inside libjpeg and enlarged 1.37x (the
    nearest DCT scale: see bot.imaging.geometry); compared with a Lanczos resize of every pixel
    it is off by 1.8 levels of 255 on average (1.2 at 1/2, 2.7 at 1/8, 7.5 for nearest pixels)."""
    data = photo_jpeg(2000, 1500)  # the bench photo's shape at a quarter of its pixels
    out = check_square(normalize_image(data, side=512), 512)
    reference = decode_image(data).resize(
        (512, 512), Image.Resampling.LANCZOS, box=(250, 0, 1750, 1500)
    )
    assert sum(ImageStat.Stat(ImageChops.difference(out, reference)).mean) / 3 < 2.0


def test_a_rotated_phone_photo_is_upright_after_reduced_decoding() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, displayed portrait: the left half ends up on top
    data = encode(halves((2400, 1600)), "JPEG", quality=90, exif=exif.tobytes())
    result = normalize_image(data, side=512, fit="pad")
    assert result.source_size == (1600, 2400)
    assert result.content_box == (85, 0, 426, 512)
    im = check_square(result, 512)
    assert close_to(im.getpixel((256, 100)), RED)
    assert close_to(im.getpixel((256, 400)), BLUE)


@pytest.mark.parametrize("size", [(48, 48), (16, 16), (8, 16)])
def test_small_images_are_upscaled(size: tuple[int, int]) -> None:
    result = normalize_image(encode(halves(size)), side=1024, fit="pad")
    im = check_square(result, 1024)
    left, _, right, _ = result.content_box
    assert close_to(im.getpixel((left + 10, 500)), RED)
    assert close_to(im.getpixel((right - 10, 500)), BLUE)


def test_pad_reports_where_the_picture_is() -> None:
    result = normalize_image(encode(halves((400, 200))), side=512, fit="pad")
    assert result.content_box == (0, 128, 512, 384)
    im = check_square(result, 512)
    assert im.getpixel((256, 10)) == (0, 0, 0)
    assert close_to(im.getpixel((10, 256)), RED)


def test_transparency_is_flattened_onto_white_unless_kept() -> None:
    im = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    im.paste((255, 0, 0, 255), (16, 16, 48, 48))
    flat = check_square(normalize_image(encode(im), side=64), 64)
    assert flat.mode == "RGB"
    assert flat.getpixel((2, 2)) == (255, 255, 255)
    assert flat.getpixel((32, 32)) == RED
    kept_result = normalize_image(encode(im), side=64, keep_alpha=True)
    kept = check_square(kept_result, 64)
    assert kept.mode == "RGBA" and pixel(kept, (2, 2))[3] == 0


def test_keep_alpha_padding_is_transparent() -> None:
    im = Image.new("RGBA", (128, 64), (255, 0, 0, 255))
    im.putpixel((0, 0), (0, 0, 0, 0))
    out = check_square(normalize_image(encode(im), side=128, fit="pad", keep_alpha=True), 128)
    assert out.getpixel((64, 2)) == (0, 0, 0, 0)


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_random_noise_at_1024_is_under_the_limit(mode: str) -> None:
    data = encode(noise(mode, (1024, 1024)), compress_level=0)
    assert len(data) > 3_000_000
    result = normalize_image(data, side=1024, keep_alpha=True)
    check_square(result, 1024)
    assert result.quantized == (mode == "RGBA")


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_random_noise_at_2048_is_under_the_limit_at_a_smaller_side(mode: str) -> None:
    result = normalize_image(
        encode(noise(mode, (2048, 2048)), compress_level=0), side=2048, keep_alpha=True
    )
    assert result.shrunk and result.requested_side == 2048
    check_square(result, result.side)
    assert result.content_box == (0, 0, result.side, result.side)


@pytest.mark.parametrize("side", [0, 100, 8192])
def test_sides_that_no_model_takes_are_a_programming_error(side: int) -> None:
    with pytest.raises(ValueError, match="multiple of 16"):
        normalize_image(encode(photo((64, 64))), side=side)


def test_bad_input_errors_come_through_unchanged() -> None:
    with pytest.raises(ImageTooManyPixels):
        normalize_image(png_header_only(30_000, 30_000), side=1024)
    data = encode(photo((256, 256)), "JPEG")
    with pytest.raises(ImageCorrupt):
        normalize_image(data[: len(data) // 2], side=256)


@pytest.mark.parametrize("fit", ["crop", "pad"])
@pytest.mark.parametrize(
    ("size", "target"), [((3000, 2000), (1536, 1024)), ((2000, 3000), (1024, 1536))]
)
def test_a_3_2_photo_keeps_its_shape_without_bars(
    fit: Fit, size: tuple[int, int], target: tuple[int, int]
) -> None:
    data = encode(halves(size, mode="RGBA"), "PNG")
    result = normalize_image(data, side=target, fit=fit, keep_alpha=True)
    im = decode_png(result.png)
    assert im.size == target == result.size == result.requested_size
    assert result.content_box == (0, 0, *target)
    width, height = target
    for corner, colour in [((0, 0), RED), ((0, height - 1), RED)]:
        assert close_to(pixel(im, corner), (*colour, 255))  # opaque: no transparent bar
    for corner in [(width - 1, 0), (width - 1, height - 1)]:
        assert close_to(pixel(im, corner), (*BLUE, 255))


def test_a_rectangle_that_must_shrink_keeps_its_shape() -> None:
    tight = ImageLimits(output_max_bytes=1_000_000)
    data = encode(noise("RGB", (1536, 1024)))
    result = normalize_image(data, side=(1536, 1024), limits=tight)
    assert result.shrunk and result.requested_size == (1536, 1024)
    width, height = decode_png(result.png).size
    assert (width, height) == result.size and abs(width / height - 1.5) < 0.01


# --- a job's normalized input, normalized again when it is sent ----------------------------------


def test_a_normalized_png_normalizes_to_itself() -> None:
    """Uploads are normalized at admission and again when the job runs: the same file is sent."""
    first = normalize_image(encode(photo((1200, 900)), "JPEG"), side=512)
    again = normalize_image(first.png, side=512)
    assert again.png == first.png
    assert (again.size, again.mode, again.quantized, again.content_box) == (
        first.size,
        first.mode,
        first.quantized,
        first.content_box,
    )


def test_a_png_at_the_target_size_with_metadata_is_encoded_again_without_it() -> None:
    """Only a file of nothing but pixels is sent as it is: a member's text chunks never are."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "a member's real name")
    source = encode(photo((256, 256)), "PNG", pnginfo=info)
    result = normalize_image(source, side=256)
    assert result.png != source and b"real name" not in result.png
    assert decode_png(result.png).size == (256, 256)


def test_an_rgba_png_at_the_target_size_is_still_flattened_when_alpha_is_not_kept() -> None:
    source = normalize_image(
        encode(halves((256, 256), mode="RGBA"), "PNG"), side=256, keep_alpha=True
    )
    assert source.mode == "RGBA"
    result = normalize_image(source.png, side=256)
    assert result.mode == "RGB" and decode_png(result.png).mode == "RGB"


def test_a_plain_png_at_the_target_size_with_broken_pixel_data_is_refused_not_sent() -> None:
    whole = normalize_image(encode(photo((256, 256)), "PNG"), side=256).png
    start = whole.index(b"IDAT") + 4
    # The chunks still look right (lengths, order); the deflate stream inside is garbage.
    broken = whole[: start + 2] + bytes(200) + b"\xff" * 200 + whole[start + 402 :]
    assert len(broken) == len(whole)
    with pytest.raises(ImageCorrupt):
        normalize_image(broken, side=256)
