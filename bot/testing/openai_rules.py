"""Per-model rules of the fake Images API, written from the official spec's descriptions.

The spec itself constrains little (``size`` and ``model`` accept any string), so the rules the
real service enforces per model live here. They are deliberately independent of
``bot.providers.capabilities``: the fake is an oracle for the client, not a copy of it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import random
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageChops

FOUR_MB = 4_000_000
FIFTY_MB = 50_000_000
_GPT_SIZES = frozenset({"1024x1024", "1536x1024", "1024x1536", "auto"})
_GPT_QUALITIES = frozenset({"low", "medium", "high", "auto"})

KNOWN_PARAMS = {
    "generations": {
        "prompt", "model", "n", "quality", "response_format", "output_format",
        "output_compression", "stream", "partial_images", "size", "moderation", "background",
        "style", "user",
    },
    "edits": {
        "image", "image[]", "prompt", "mask", "background", "model", "n", "size",
        "response_format", "output_format", "output_compression", "user", "input_fidelity",
        "stream", "partial_images", "quality",
    },
    "variations": {"image", "model", "n", "response_format", "size", "user"},
}  # fmt: skip
#: What the real API assumes when ``model`` is absent (per the spec's defaults).
DEFAULT_MODEL = {"generations": "dall-e-2", "edits": "gpt-image-1.5", "variations": "dall-e-2"}


class Rejected(Exception):
    """A 400 the real API would answer; ``param`` names the offending field."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message, self.param, self.code = message, param, code


@dataclass(frozen=True)
class FakeModel:
    endpoints: frozenset[str]
    sizes: frozenset[str]
    max_n: int
    max_prompt: int
    qualities: frozenset[str]
    gpt: bool = False
    free_sizes: bool = False
    styles: frozenset[str] = frozenset()
    #: Edits take ``input_fidelity`` high|low (the GPT image models but gpt-image-1-mini).
    input_fidelity: bool = False


DALL_E_2 = FakeModel(
    frozenset({"generations", "edits", "variations"}),
    frozenset({"256x256", "512x512", "1024x1024"}),
    10,
    1000,
    frozenset({"standard", "auto"}),
)
DALL_E_3 = FakeModel(
    frozenset({"generations"}),
    frozenset({"1024x1024", "1792x1024", "1024x1792"}),
    1,
    4000,
    frozenset({"standard", "hd", "auto"}),
    styles=frozenset({"vivid", "natural"}),
)
GPT_IMAGE = FakeModel(
    frozenset({"generations", "edits"}),
    _GPT_SIZES,
    10,
    32000,
    _GPT_QUALITIES,
    gpt=True,
    input_fidelity=True,
)
GPT_IMAGE_MINI = dataclasses.replace(GPT_IMAGE, input_fidelity=False)
GPT_IMAGE_2 = FakeModel(
    frozenset({"generations", "edits"}),
    _GPT_SIZES,
    10,
    32000,
    _GPT_QUALITIES,
    gpt=True,
    free_sizes=True,
    input_fidelity=True,
)
MODELS = {
    "dall-e-2": DALL_E_2,
    "dall-e-3": DALL_E_3,
    "gpt-image-1": GPT_IMAGE,
    "gpt-image-1-mini": GPT_IMAGE_MINI,
    "gpt-image-1.5": GPT_IMAGE,
    "gpt-image-2": GPT_IMAGE_2,
}


def _dimensions(size: str) -> tuple[int, int] | None:
    width, sep, height = size.partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        return None
    return int(width), int(height)


def _free_size_ok(size: str) -> bool:
    dims = _dimensions(size)
    if dims is None:
        return False
    width, height = dims
    long, short = max(dims), min(dims)
    return (
        width > 0
        and height > 0
        and width % 16 == 0
        and height % 16 == 0
        and long <= 3 * short
        and long <= 3840
        and width * height <= 3840 * 2160
    )


def check_params(endpoint: str, name: str, model: FakeModel, body: dict[str, Any]) -> None:
    """Raise :class:`Rejected` for anything the real endpoint refuses for this model."""
    unknown = sorted(set(body) - KNOWN_PARAMS[endpoint])
    if unknown:
        raise Rejected(f"Unrecognized request argument supplied: {unknown[0]}", unknown[0])
    if endpoint not in model.endpoints:
        raise Rejected(f"Invalid value for 'model' = {name}: not supported on /images/{endpoint}.")
    prompt = body.get("prompt")
    if endpoint != "variations":
        if not isinstance(prompt, str) or not prompt:
            raise Rejected("Missing required parameter: 'prompt'.", "prompt")
        if len(prompt) > model.max_prompt:
            raise Rejected(
                f"'prompt' is too long. Maximum length is {model.max_prompt} characters.", "prompt"
            )
    n = body.get("n", 1)
    if n is not None and not (isinstance(n, int) and 1 <= n <= model.max_n):
        text = "You must provide n=1 for this model." if model.max_n == 1 else "Invalid 'n'."
        raise Rejected(text, "n")
    size = body.get("size")
    if (
        size is not None
        and size not in model.sizes
        and not (model.free_sizes and _free_size_ok(size))
    ):
        supported = ", ".join(f"'{s}'" for s in sorted(model.sizes))
        raise Rejected(f"Invalid value: '{size}'. Supported values are: {supported}.", "size")
    quality = body.get("quality")
    if quality is not None and quality not in model.qualities:
        raise Rejected(f"Invalid value: '{quality}' for 'quality'.", "quality")
    fidelity = body.get("input_fidelity")
    if fidelity is not None:
        if not model.input_fidelity:
            # The wording of the real refusal is not documented: this one names the parameter.
            raise Rejected(f"'input_fidelity' is not supported with {name}.", "input_fidelity")
        if fidelity not in ("high", "low"):
            raise Rejected(
                f"Invalid value: '{fidelity}'. Supported values are: 'high' and 'low'.",
                "input_fidelity",
            )
    if body.get("style") is not None and body["style"] not in model.styles:
        raise Rejected("'style' is only supported for dall-e-3.", "style")
    if model.gpt:
        if body.get("response_format") is not None:
            raise Rejected("Unknown parameter: 'response_format'.", "response_format")
        if body.get("background") == "transparent" and body.get("output_format") == "jpeg":
            raise Rejected(
                "Transparent background requires output_format png or webp.", "background"
            )
    else:
        if body.get("stream") is True:
            # The wording of the real refusal is not documented: this one names the parameter.
            raise Rejected("Streaming is only supported for the GPT image models.", "stream")
        for param in ("background", "output_format", "output_compression", "moderation"):
            if body.get(param) is not None:
                raise Rejected(f"'{param}' is only supported for the GPT image models.", param)


def _open(data: bytes) -> Image.Image | None:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception:
        return None
    return image


def check_images(
    endpoint: str, model: FakeModel, images: list[bytes], mask: bytes | None
) -> tuple[int, int]:
    """Check input images and mask the way the real endpoint does; returns the first one's size."""
    if not images:
        raise Rejected("Missing required parameter: 'image'.", "image")
    opened = []
    for index, data in enumerate(images, 1):
        image = _open(data)
        if model.gpt:
            if (
                image is None
                or image.format not in {"PNG", "JPEG", "WEBP"}
                or len(data) >= FIFTY_MB
            ):
                raise Rejected(f"Invalid image file or mode for image {index}.", "image")
        elif image is None or image.format != "PNG" or len(data) >= FOUR_MB:
            raise Rejected("Uploaded image must be a PNG and less than 4 MB.", "image")
        elif image.width != image.height:
            raise Rejected("Uploaded image must be square.", "image")
        opened.append(image)
    if not model.gpt and len(images) > 1:
        raise Rejected(f"{endpoint}: dall-e-2 accepts only one image.", "image")
    if len(images) > 16:
        raise Rejected("At most 16 images may be provided.", "image")
    if mask is not None:
        mask_image = _open(mask)
        if mask_image is None or mask_image.format != "PNG" or len(mask) >= FOUR_MB:
            raise Rejected("Mask must be a PNG and less than 4 MB.", "mask")
        if mask_image.size != opened[0].size:
            raise Rejected("Invalid mask: mask and image must have the same dimensions.", "mask")
    return opened[0].size


def output_size(size: str | None, source: tuple[int, int] | None = None) -> tuple[int, int]:
    """The size to answer with; ``auto`` follows the source image's orientation."""
    if size is None or size == "auto":
        if source is None or abs(source[0] - source[1]) * 5 < max(source):
            return 1024, 1024
        return (1536, 1024) if source[0] > source[1] else (1024, 1536)
    dims = _dimensions(size)
    assert dims is not None
    return dims


def colour_for(*parts: object) -> tuple[int, int, int]:
    """A colour derived from the request, so different prompts give different images."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return digest[0], digest[1], digest[2]


@functools.lru_cache(maxsize=256)
def make_image(width: int, height: int, colour: tuple[int, int, int], fmt: str) -> bytes:
    """Real image bytes of the requested size; a solid colour keeps this fast."""
    mode = "RGBA" if fmt in {"png", "webp"} else "RGB"
    return _encode(Image.new(mode, (width, height), (*colour, 255)[: len(mode)]), fmt)


#: Noisy images take ~0.2 s to make: a benchmark asking for the same one again gets it at once.
@functools.lru_cache(maxsize=16)
def make_noisy_image(
    width: int, height: int, colour: tuple[int, int, int], fmt: str, bits: int
) -> bytes:
    """``colour`` with ``bits`` of random noise per channel: sizes like real answers.

    Real answers are photographs and drawings that PNG compresses little: 2 bits give a
    1024x1024 PNG of about 1.6 MB (what gpt-image and dall-e PNGs weigh), 8 bits are noise no
    encoder shrinks. Seeded by the request, so the same request gives the same bytes.
    """
    mode = "RGBA" if fmt in {"png", "webp"} else "RGB"
    seeded = random.Random(f"{width}x{height}:{colour}:{bits}")
    noise = Image.frombytes("RGB", (width, height), seeded.randbytes(width * height * 3))
    if bits < 8:
        low = bytes(value & ((1 << bits) - 1) for value in range(256))
        base = Image.new("RGB", (width, height), colour)
        noise = ImageChops.add(base, noise.point(list(low) * 3))
    return _encode(noise.convert(mode), fmt)


def _encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt.upper(), **({"compress_level": 1} if fmt == "png" else {}))
    return buffer.getvalue()


def usage(prompt: str, n: int, quality: str, input_images: int) -> dict[str, Any]:
    """Token counts shaped like the real ``usage`` object (the numbers are plausible, not exact)."""
    text_tokens = len(prompt) // 4 + 1
    image_tokens = 323 * input_images
    per_image = {"low": 272, "medium": 1056, "high": 4160}.get(quality, 1056)
    output = per_image * n
    return {
        "input_tokens": text_tokens + image_tokens,
        "output_tokens": output,
        "total_tokens": text_tokens + image_tokens + output,
        "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": image_tokens},
        "output_tokens_details": {"image_tokens": output, "text_tokens": 0},
    }
