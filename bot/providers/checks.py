"""Refuse impossible requests before they cost a round trip, and list the valid choices.

A request the provider would reject still takes seconds and, for some servers, a slot of the rate
limit; a member also deserves a message that names the limit ("at most 1000 characters") instead
of the provider's wording. The Discord layer calls :func:`option_choices` to offer only what the
configured model can do, and :func:`check_request` to validate free-form input such as sizes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from bot.config import ProviderSettings
from bot.providers.capabilities import ModelSpec
from bot.providers.errors import (
    InputImageRejected,
    InvalidRequest,
    PromptTooLong,
    SDOptionOutOfRange,
    SDOptionUnavailable,
    TooManyImages,
    TooManyInputImages,
    UnsupportedOperation,
    UnsupportedOption,
    UnsupportedSize,
)
from bot.providers.types import (
    SD_FIELDS,
    EditRequest,
    GenerateRequest,
    ImageRequest,
    Operation,
    VaryRequest,
)

_NONE = "none (leave it out)"
#: ``input_fidelity`` values of the GPT image models that take it (``ModelSpec.input_fidelity``).
INPUT_FIDELITIES = ("high", "low")
#: ``moderation`` levels of the GPT image models (``ModelSpec.moderation``).
MODERATION_LEVELS = ("low", "auto")
#: What members call each of ``SD_FIELDS`` (the commands' option names), for the messages.
SD_OPTION_NAMES = {"negative_prompt": "negative"}


@dataclass(frozen=True)
class OptionChoices:
    """What a member may pick for one operation of one model."""

    operation: Operation
    sizes: tuple[str, ...]
    #: Description of the arbitrary WxH sizes the model also accepts, or None.
    custom_sizes: str | None
    max_n: int
    qualities: tuple[str, ...] = ()
    styles: tuple[str, ...] = ()
    backgrounds: tuple[str, ...] = ()
    output_formats: tuple[str, ...] = ()


def option_choices(spec: ModelSpec, operation: Operation) -> OptionChoices:
    """The options that make sense for ``operation`` on ``spec``; raises if it is unsupported.

    Native variations take only ``n`` and ``size``; edits have no ``style``; variations made
    through the edits endpoint take no quality either, since the member does not write a prompt.
    """
    if not spec.supports(operation):
        raise UnsupportedOperation(model=spec.name, operation=operation.value)
    custom = spec.free_size.describe() if spec.free_size else None
    if operation is Operation.VARY:
        return OptionChoices(operation, spec.sizes, custom, spec.max_n)
    return OptionChoices(
        operation,
        spec.sizes,
        custom,
        spec.max_n,
        qualities=spec.qualities,
        styles=spec.styles if operation is Operation.GENERATE else (),
        backgrounds=spec.backgrounds,
        output_formats=spec.output_formats,
    )


def check_request(
    spec: ModelSpec, request: ImageRequest, *, images: bool = True, sd_options: bool = False
) -> None:
    """Raise an :class:`UnsupportedOption` subclass if ``spec`` cannot serve ``request``.

    ``images=False`` checks only the options: what a front end can check the moment a member
    submits, before the uploads are downloaded and normalized. ``sd_options``: the backend takes
    the Stable Diffusion options (``BackendFeatures.sd_options``); without it a request that
    sets one is refused, never sent without it.
    """
    operation = request.operation
    if not sd_options:
        check_sd_options(spec, request, None)
    if not spec.supports(operation):
        raise UnsupportedOperation(model=spec.name, operation=operation.value)
    if isinstance(request.n, bool) or not 1 <= request.n <= spec.max_n:
        raise TooManyImages(model=spec.name, max_n=spec.max_n, n=request.n)
    if request.size is not None and not spec.allows_size(request.size):
        raise UnsupportedSize(model=spec.name, size=request.size, allowed=spec.describe_sizes())
    if isinstance(request, GenerateRequest | EditRequest):
        _check_prompt(spec, request.prompt)
        choices = option_choices(spec, operation)
        _check_choice(spec, "quality", request.quality, choices.qualities)
        if isinstance(request, GenerateRequest):
            _check_choice(spec, "style", request.style, choices.styles)
            levels = MODERATION_LEVELS if spec.moderation else ()
            _check_choice(spec, "moderation", request.moderation, levels)
        _check_choice(spec, "background", request.background, choices.backgrounds)
        if isinstance(request, EditRequest) and request.input_fidelity is not None:
            fidelities = INPUT_FIDELITIES if spec.input_fidelity else ()
            _check_choice(spec, "input fidelity", request.input_fidelity, fidelities)
        _check_choice(spec, "output format", request.output_format, choices.output_formats)
        if request.background == "transparent" and request.output_format == "jpeg":
            raise UnsupportedOption(
                model=spec.name,
                option="output format",
                value="jpeg",
                allowed="png, webp (a transparent background needs one of them)",
            )
    if isinstance(request, EditRequest) and request.extra_images:
        count = 1 + len(request.extra_images)
        if count > spec.max_input_images:
            raise TooManyInputImages(model=spec.name, limit=spec.max_input_images, count=count)
        if images:
            for extra in request.extra_images:
                _check_image(spec, extra)
    if images and isinstance(request, EditRequest | VaryRequest):
        _check_image(spec, request.image)
        mask = request.mask if isinstance(request, EditRequest) else None
        if mask is not None:
            _check_mask(spec, request.image, mask)


@dataclass(frozen=True)
class SDLimits:
    """What a Stable Diffusion backend lets members ask for: the operator's ``max_steps`` and
    ``max_guidance`` of that backend, seeds as the servers take them (32 bits)."""

    max_steps: int
    max_guidance: float

    @classmethod
    def of(cls, backend: ProviderSettings) -> SDLimits | None:
        """The limits of ``backend``; None for a backend without the options (OpenAI)."""
        if backend.type == "openai":
            return None
        return cls(backend.max_steps, backend.max_guidance)


#: Largest seed: Stable Diffusion servers take 32-bit seeds (also Discord's option bound).
MAX_SEED = 2**32 - 1


def check_sd_options(spec: ModelSpec, request: ImageRequest, limits: SDLimits | None) -> None:
    """Refuse Stable Diffusion options on a backend without them (``limits`` None), naming the
    option, and values beyond ``limits``."""
    given = [name for name in SD_FIELDS if getattr(request, name) not in (None, "")]
    if not given:
        return
    if limits is None:
        name = given[0]
        raise SDOptionUnavailable(
            model=spec.name,
            option=SD_OPTION_NAMES.get(name, name),
            value=getattr(request, name),
            allowed=_NONE,
        )
    ranges = (
        ("steps", request.steps, 1, limits.max_steps),
        ("guidance", request.guidance, 1, limits.max_guidance),
        ("seed", request.seed, 0, MAX_SEED),
        ("strength", request.strength, 0, 1),
    )
    for option, value, low, high in ranges:
        if value is not None and not low <= value <= high:
            shown, lowest, highest = (_number(v) for v in (value, low, high))
            raise SDOptionOutOfRange(
                model=spec.name,
                option=option,
                value=shown,
                allowed=f"{lowest}-{highest}",
                low=lowest,
                high=highest,
            )


def _number(value: float) -> str:
    """7, 7.5, 4294967295: as members typed them (``:g`` would show 4.29497e+09)."""
    return f"{value:g}" if isinstance(value, float) and not value.is_integer() else str(int(value))


def _check_prompt(spec: ModelSpec, prompt: str) -> None:
    if not prompt.strip():
        raise InvalidRequest(reason="the prompt is empty.")
    if len(prompt) > spec.max_prompt_chars:
        raise PromptTooLong(model=spec.name, length=len(prompt), limit=spec.max_prompt_chars)


def _check_choice(
    spec: ModelSpec, option: str, value: str | None, allowed: tuple[str, ...]
) -> None:
    if value is not None and value not in allowed:
        raise UnsupportedOption(
            model=spec.name, option=option, value=value, allowed=", ".join(allowed) or _NONE
        )


def image_format(data: bytes) -> str | None:
    """``png``, ``jpeg`` or ``webp`` from the magic bytes; None for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def png_dimensions(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG's IHDR chunk, without decoding (cheap on the event loop)."""
    if image_format(data) != "png" or len(data) < 24 or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def _check_image(spec: ModelSpec, image: bytes) -> None:
    rule = spec.edit_input
    kind = image_format(image)
    formats = ", ".join(sorted(rule.formats))
    if kind not in rule.formats:
        raise InputImageRejected(model=spec.name, what="image", rule=f"it must be {formats}")
    if len(image) >= rule.max_bytes:
        raise InputImageRejected(
            model=spec.name, what="image", rule=f"it must be smaller than {rule.max_bytes} bytes"
        )
    if rule.square:
        size = png_dimensions(image)
        if size is None or size[0] != size[1]:
            raise InputImageRejected(model=spec.name, what="image", rule="it must be square")


def _check_mask(spec: ModelSpec, image: bytes, mask: bytes) -> None:
    mask_size = png_dimensions(mask)
    if mask_size is None:
        raise InputImageRejected(model=spec.name, what="mask", rule="it must be a PNG")
    if len(mask) >= spec.mask_max_bytes:
        raise InputImageRejected(
            model=spec.name,
            what="mask",
            rule=f"it must be smaller than {spec.mask_max_bytes} bytes",
        )
    image_size = png_dimensions(image)
    if image_size is not None and image_size != mask_size:
        raise InputImageRejected(
            model=spec.name,
            what="mask",
            rule=f"it must have the image's dimensions ({image_size[0]}x{image_size[1]})",
        )
