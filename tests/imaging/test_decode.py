"""Reading uploads: every accepted format and mode, EXIF rotation, and every kind of bad file."""

from __future__ import annotations

import warnings
from typing import cast

import pytest
from PIL import Image

from bot.imaging import (
    ACCEPTED_FORMATS,
    ImageAspectRatio,
    ImageCorrupt,
    ImageEmpty,
    ImageLimits,
    ImageTooLarge,
    ImageTooManyPixels,
    NotAnImage,
    UnsupportedImageFormat,
    probe,
)
from bot.imaging.decode import load, open_image, to_rgb
from bot.imaging.normalize import open_mask
from tests.imaging.samples import (
    BLUE,
    GREEN,
    RED,
    close_to,
    encode,
    halves,
    noise,
    pixel,
    png_16bit,
    png_exif_after_pixels,
    png_header_only,
)

LIMITS = ImageLimits()


def decoded(data: bytes, *, keep_alpha: bool = False) -> Image.Image:
    image, _ = load(open_image(data, LIMITS))
    return to_rgb(image, keep_alpha=keep_alpha)


@pytest.mark.parametrize(
    ("fmt", "params"),
    [
        ("PNG", {}),
        ("JPEG", {"quality": 95}),
        ("WEBP", {"lossless": True}),
        ("GIF", {}),
        ("BMP", {}),
        ("TIFF", {}),
        ("TIFF", {"compression": "tiff_lzw"}),
    ],
)
def test_accepted_formats_decode_to_the_same_picture(fmt: str, params: dict[str, object]) -> None:
    data = encode(halves((80, 60)), fmt, **params)
    assert probe(data, LIMITS) == (fmt, 80, 60)
    im = decoded(data)
    assert im.mode == "RGB"
    assert close_to(im.getpixel((10, 30)), RED)
    assert close_to(im.getpixel((70, 30)), BLUE)


def test_avif_is_accepted_when_pillow_reads_it() -> None:
    if "AVIF" not in ACCEPTED_FORMATS:
        pytest.skip("this Pillow has no AVIF support")
    data = encode(halves((80, 60)), "AVIF", quality=90)
    assert probe(data, LIMITS).format == "AVIF"
    assert close_to(decoded(data).getpixel((10, 30)), RED, tolerance=40)


def test_jpeg_exif_orientation_6_comes_out_rotated() -> None:
    # Stored landscape, red left: a camera held upright says "rotate 90 degrees clockwise".
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(halves((120, 80)), "JPEG", quality=95, exif=exif.tobytes())
    assert probe(data, LIMITS)[1:] == (80, 120)  # as displayed, before decoding
    im = decoded(data)
    assert im.size == (80, 120)
    assert close_to(im.getpixel((40, 10)), RED)  # the left half is now on top
    assert close_to(im.getpixel((40, 110)), BLUE)


@pytest.mark.parametrize("where", ["before the pixels", "after the pixels"])
def test_png_exif_orientation_comes_out_rotated(where: str) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(halves((120, 80)), "PNG", exif=exif.tobytes())
    if where == "after the pixels":
        data = png_exif_after_pixels(data)
    assert probe(data, LIMITS)[1:] == (80, 120)
    im = decoded(data)
    assert im.size == (80, 120)
    assert close_to(im.getpixel((40, 10)), RED)
    assert close_to(im.getpixel((40, 110)), BLUE)


def test_a_broken_exif_block_does_not_sink_a_readable_picture() -> None:
    data = encode(halves((64, 64)), "JPEG", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about the EXIF; the picture is fine
        im = decoded(data)
    assert close_to(im.getpixel((10, 32)), RED)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animations_use_their_first_frame(fmt: str) -> None:
    frames = [Image.new("RGB", (64, 64), colour) for colour in (RED, GREEN, BLUE)]
    params = {"lossless": True} if fmt == "WEBP" else {}
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, **params)
    assert close_to(decoded(data).getpixel((32, 32)), RED)


def test_palette_transparency_is_kept_or_flattened_onto_white() -> None:
    im = Image.new("P", (64, 64), 1)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.paste(0, (0, 0, 32, 64))  # left half: palette entry 0, the transparent one
    data = encode(im, "PNG", transparency=0)
    kept = decoded(data, keep_alpha=True)
    assert kept.mode == "RGBA"
    assert pixel(kept, (10, 10))[3] == 0
    assert kept.getpixel((50, 10)) == (255, 0, 0, 255)
    flat = decoded(data)
    assert flat.mode == "RGB"
    assert flat.getpixel((10, 10)) == (255, 255, 255)
    assert flat.getpixel((50, 10)) == RED


@pytest.mark.parametrize(
    ("mode", "fmt", "colour", "expected"),
    [
        ("L", "PNG", 128, (128, 128, 128)),
        ("1", "PNG", 1, (255, 255, 255)),
        ("1", "BMP", 0, (0, 0, 0)),
        ("P", "GIF", None, RED),
        ("CMYK", "JPEG", (0, 255, 255, 0), RED),
        ("CMYK", "TIFF", (255, 0, 255, 0), GREEN),
        ("I;16", "PNG", 128 * 257, (128, 128, 128)),
        ("I;16", "TIFF", 65535, (255, 255, 255)),
        ("I", "TIFF", 200 * 257, (200, 200, 200)),
        ("F", "TIFF", 0.5, (128, 128, 128)),
        ("LAB", "TIFF", (255, 128, 128), (255, 255, 255)),
        ("LAB", "TIFF", (136, 208, 195), (255, 0, 0)),
        ("YCbCr", "JPEG", (76, 85, 255), RED),
    ],
)
def test_modes_convert_to_the_right_colours(
    mode: str, fmt: str, colour: object, expected: tuple[int, int, int]
) -> None:
    if mode == "P":
        im = Image.new("RGB", (64, 64), RED).convert("P")
    else:
        im = Image.new(mode, (64, 64), colour)  # type: ignore[arg-type]
    data = encode(im, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    out = decoded(data)
    assert out.mode == "RGB"
    assert close_to(out.getpixel((32, 32)), expected, tolerance=12)


def test_16_bit_greyscale_png_keeps_its_shades_instead_of_turning_white() -> None:
    gradient = Image.linear_gradient("L").resize((64, 64)).convert("I")
    im = gradient.point(lambda v: v * 257).convert("I;16")
    out = decoded(encode(im, "PNG"))
    low, high = cast(tuple[int, int], out.convert("L").getextrema())
    assert low < 10 and high > 245  # the full range survives
    assert close_to(out.getpixel((32, 32)), (128, 128, 128), tolerance=8)


@pytest.mark.parametrize(
    ("color_type", "pixel", "expected", "alpha"),
    [
        (2, (60000, 30000, 1000), (233, 117, 4), None),
        (6, (60000, 30000, 1000, 65535), (233, 117, 4), 255),
        (4, (40000, 0), (156, 156, 156), 0),
    ],
)
def test_16_bit_colour_pngs_scale_to_8_bit(
    color_type: int, pixel: tuple[int, ...], expected: tuple[int, ...], alpha: int | None
) -> None:
    out = decoded(png_16bit(40, 40, color_type, pixel), keep_alpha=True)
    got = out.getpixel((5, 5))
    assert isinstance(got, tuple)
    if alpha is None:
        assert out.mode == "RGB"
    else:
        assert out.mode == "RGBA" and got[3] == alpha
    if alpha != 0:
        assert close_to(got[:3], expected, tolerance=2)


def test_la_and_pa_keep_alpha() -> None:
    la = Image.new("LA", (64, 64), (200, 0))
    la.paste((200, 255), (32, 0, 64, 64))
    out = decoded(encode(la, "PNG"), keep_alpha=True)
    assert out.mode == "RGBA"
    assert pixel(out, (10, 10))[3] == 0
    assert out.getpixel((50, 10)) == (200, 200, 200, 255)
    pa = Image.new("RGBA", (64, 64), (255, 0, 0, 0)).convert("PA")
    assert pixel(decoded(encode(pa, "TIFF"), keep_alpha=True), (1, 1))[3] == 0


# --- bad input ------------------------------------------------------------------------------


def test_empty_file() -> None:
    with pytest.raises(ImageEmpty, match="empty"):
        probe(b"", LIMITS)


@pytest.mark.parametrize(
    "data",
    [
        b"Hello, this is my prompt, not a picture.\n" * 20,
        b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n",
        bytes(range(256)) * 4,
    ],
    ids=["text", "pdf", "binary"],
)
def test_not_an_image_names_the_formats_that_work(data: bytes) -> None:
    with pytest.raises(NotAnImage) as caught:
        probe(data, LIMITS)
    assert "isn't an image" in str(caught.value)
    assert "PNG, JPEG, WebP, GIF, BMP" in str(caught.value)


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"></svg>', "SVG"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(200), "HEIC"),
        (b"8BPS\x00\x01" + bytes(200), "Photoshop (PSD)"),
    ],
)
def test_unsupported_image_formats_say_which_formats_are_accepted(data: bytes, name: str) -> None:
    with pytest.raises(UnsupportedImageFormat) as caught:
        probe(data, LIMITS)
    message = str(caught.value)
    assert message.startswith(f"{name} images can't be read here")
    assert "PNG, JPEG, WebP, GIF, BMP" in message


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF", "TIFF", "BMP"])
def test_truncated_files_are_reported_as_damaged(fmt: str) -> None:
    data = encode(
        noise("RGB", (128, 128)).convert("P") if fmt == "GIF" else noise("RGB", (128, 128)), fmt
    )
    with pytest.raises(ImageCorrupt, match="damaged or incomplete"):
        load(open_image(data[: len(data) * 2 // 3], LIMITS))


def test_a_broken_header_is_damaged_not_unknown() -> None:
    data = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + bytes(40)
    with pytest.raises(ImageCorrupt):
        probe(data, LIMITS)


@pytest.mark.parametrize(
    ("width", "height"),
    [(10_000, 6_000), (10_000, 10_000), (20_000, 20_000), (100_000, 100_000)],
)
def test_decompression_bombs_are_refused_from_the_header_with_our_message(
    width: int, height: int
) -> None:
    data = png_header_only(width, height)
    assert len(data) < 200
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's own warning must not fire either
        with pytest.raises(ImageTooManyPixels) as caught:
            probe(data, LIMITS)
    assert str(caught.value).startswith(f"That image is {width}x{height} pixels")
    assert "the limit is 50 megapixels" in str(caught.value)


def test_the_operators_pixel_limit_is_the_only_one() -> None:
    # 150 MP is past Pillow's own guard (89 MP warns, 179 MP fails): ours decides alone.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        info = probe(png_header_only(15_000, 10_000), ImageLimits(max_pixels=200_000_000))
    assert info == ("PNG", 15_000, 10_000)


def test_extreme_aspect_ratio() -> None:
    with pytest.raises(ImageAspectRatio) as caught:
        probe(encode(Image.new("L", (1, 10_000))), LIMITS)
    assert str(caught.value).startswith(
        "That image is 1x10000 pixels; the longest side may be at most 4 times the shortest."
    )
    probe(encode(Image.new("L", (400, 100))), LIMITS)  # exactly 4:1 passes


@pytest.mark.parametrize("size", [(16, 16), (1, 1), (10, 40)])
def test_tiny_images_are_accepted(size: tuple[int, int]) -> None:
    assert probe(encode(Image.new("L", size)), LIMITS) == ("PNG", *size)


def test_a_mask_too_is_held_to_the_pixel_limit() -> None:
    image = open_image(encode(Image.new("L", (100, 100))), LIMITS)
    with pytest.raises(ImageTooManyPixels) as caught:
        open_mask(png_header_only(20_000, 20_000), image, LIMITS)
    assert caught.value.subject == "mask"


def test_file_over_the_byte_limit() -> None:
    data = encode(noise("RGB", (700, 700)))  # ~1.5 MB
    with pytest.raises(ImageTooLarge, match=r"That file is 1\.5 MB; the limit is 1 MB\."):
        probe(data, ImageLimits(max_bytes=1024 * 1024))
