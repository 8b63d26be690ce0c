"""What each image model can do, as data: the default table and the operator's changes to it.

The OpenAI models differ in almost every option (sizes, n, qualities, which endpoints exist), and
OpenAI-compatible servers add models of their own. Keeping this in one table lets the client
refuse an impossible request before paying for a round trip, lets the Discord layer offer only
valid choices, and lets an operator describe a new or self-hosted model in ``config.toml``
instead of waiting for a release. Facts come from the official OpenAPI document (2026-08).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.errors import ConfigError
from bot.providers.types import Operation

MAX_N = 10
#: The spec: GPT image models' edits take "up to 16 images".
MAX_INPUT_IMAGES = 16
#: "Less than 4MB" read conservatively, so a file the real service would accept is never refused.
FOUR_MB = 4_000_000
FIFTY_MB = 50_000_000
IMAGE_FORMATS = frozenset({"png", "jpeg", "webp"})
_SIZE = re.compile(r"^([1-9][0-9]{0,5})x([1-9][0-9]{0,5})$")

DEFAULT_VARY_PROMPT = (
    "Create a variation of this image: keep the same subject, composition, colour palette and "
    "style, with natural differences in the details, as if it were another take of the same scene."
)


#: Sizes Stable Diffusion backends list (they take any multiple of 8 up to the operator's
#: max_side): the usual SD 1.5 and SDXL shapes, square first.
SD_SIZES = (
    "512x512",
    "768x768",
    "1024x1024",
    "512x768",
    "768x512",
    "832x1216",
    "1216x832",
    "896x1152",
    "1152x896",
    "768x1344",
    "1344x768",
    "640x1536",
    "1536x640",
)


def parse_size(size: str) -> tuple[int, int] | None:
    """``"1536x864"`` -> ``(1536, 864)``; None for ``"auto"`` or anything malformed."""
    match = _SIZE.match(size)
    return (int(match[1]), int(match[2])) if match else None


@dataclass(frozen=True)
class FreeSizeRule:
    """Arbitrary ``WxH`` sizes (gpt-image-2): a rule, because listing them is impossible."""

    multiple: int = 16
    #: Long side divided by short side, at most.
    max_ratio: float = 3.0
    max_edge: int = 3840
    max_pixels: int = 3840 * 2160
    min_pixels: int = 0

    def allows(self, width: int, height: int) -> bool:
        long, short = max(width, height), min(width, height)
        return (
            width % self.multiple == 0
            and height % self.multiple == 0
            and long <= self.max_ratio * short
            and long <= self.max_edge
            and self.min_pixels <= width * height <= self.max_pixels
        )

    def describe(self) -> str:
        ratio = f"{self.max_ratio:g}"
        text = (
            f"any WIDTHxHEIGHT with both sides multiples of {self.multiple}, "
            f"at most {ratio}:1 or 1:{ratio}, sides up to {self.max_edge} px "
            f"and at most {self.max_pixels} pixels"
        )
        if self.min_pixels:
            text += f" (at least {self.min_pixels})"
        return text


@dataclass(frozen=True)
class InputRule:
    """What an uploaded source image must be for edits and variations."""

    formats: frozenset[str]
    #: Exclusive: the file must be smaller than this.
    max_bytes: int
    square: bool


DALL_E_INPUT = InputRule(formats=frozenset({"png"}), max_bytes=FOUR_MB, square=True)
GPT_IMAGE_INPUT = InputRule(formats=IMAGE_FORMATS, max_bytes=FIFTY_MB, square=False)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    operations: frozenset[Operation]
    #: Listed sizes, including "auto" where the model sizes itself.
    sizes: tuple[str, ...]
    free_size: FreeSizeRule | None = None
    #: Sent when a request names no size, so cost and result size are known in advance.
    #: None: send nothing and let the server choose.
    default_size: str | None = None
    max_n: int = 1
    qualities: tuple[str, ...] = ()
    styles: tuple[str, ...] = ()
    backgrounds: tuple[str, ...] = ()
    output_formats: tuple[str, ...] = ()
    max_prompt_chars: int = 1000
    #: True: the model takes ``response_format`` (dall-e), so we must ask for ``b64_json``.
    #: False: it always answers base64 and rejects the parameter (GPT image models).
    response_format: bool = True
    #: True: ``vary`` uses /images/variations; False: /images/edits with ``vary_prompt``.
    native_variations: bool = False
    accepts_user: bool = True
    edit_input: InputRule = DALL_E_INPUT
    mask_max_bytes: int = FOUR_MB
    vary_prompt: str = DEFAULT_VARY_PROMPT
    #: True: generations and edits can be streamed (``stream``, ``partial_images``): previews.
    streams: bool = False
    #: True: edits take ``input_fidelity`` (high keeps faces and details of the input).
    input_fidelity: bool = False
    #: True: generations take ``moderation`` low|auto (GPT image models; not dall-e).
    moderation: bool = False
    #: Pictures one edit takes (``image[]``): 16 for the GPT image models, which can blend
    #: them (``/blend``); 1 for dall-e-2 and the Stable Diffusion servers.
    max_input_images: int = 1

    def supports(self, operation: Operation) -> bool:
        return operation in self.operations

    def allows_size(self, size: str) -> bool:
        if size in self.sizes:
            return True
        parsed = parse_size(size)
        return self.free_size is not None and parsed is not None and self.free_size.allows(*parsed)

    def describe_sizes(self) -> str:
        """Human list of valid sizes, used in error messages and help text."""
        parts = list(self.sizes)
        if self.free_size is not None:
            parts.append(self.free_size.describe())
        return ", ".join(parts) if parts else "none"


_ALL_OPS = frozenset(Operation)
_GPT_SIZES = ("1024x1024", "1536x1024", "1024x1536", "auto")


def _gpt_image(
    name: str, free_size: FreeSizeRule | None = None, *, input_fidelity: bool = True
) -> ModelSpec:
    return ModelSpec(
        name=name,
        operations=_ALL_OPS,
        sizes=_GPT_SIZES,
        free_size=free_size,
        default_size="auto",
        max_n=MAX_N,
        qualities=("low", "medium", "high", "auto"),
        backgrounds=("transparent", "opaque", "auto"),
        output_formats=("png", "jpeg", "webp"),
        max_prompt_chars=32_000,
        response_format=False,
        edit_input=GPT_IMAGE_INPUT,
        streams=True,
        input_fidelity=input_fidelity,
        moderation=True,
        max_input_images=MAX_INPUT_IMAGES,
    )


DEFAULT_MODELS: Mapping[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="dall-e-2",
            operations=_ALL_OPS,
            sizes=("256x256", "512x512", "1024x1024"),
            default_size="1024x1024",
            max_n=MAX_N,
            qualities=("standard",),
            max_prompt_chars=1000,
            native_variations=True,
        ),
        ModelSpec(
            name="dall-e-3",
            operations=frozenset({Operation.GENERATE}),
            sizes=("1024x1024", "1792x1024", "1024x1792"),
            default_size="1024x1024",
            max_n=1,
            qualities=("standard", "hd"),
            styles=("vivid", "natural"),
            max_prompt_chars=4000,
        ),
        _gpt_image("gpt-image-1"),
        # The spec: input_fidelity is "unsupported for gpt-image-1-mini".
        _gpt_image("gpt-image-1-mini", input_fidelity=False),
        _gpt_image("gpt-image-1.5"),
        _gpt_image("gpt-image-2", free_size=FreeSizeRule()),
    )
}


# --- operator overrides ------------------------------------------------------------------------


#: The longest model name the ledger keeps (``jobs.model``; PostgreSQL refuses a longer one).
MAX_MODEL_NAME = 64


def build_model_table(overrides: Mapping[str, Mapping[str, Any]]) -> dict[str, ModelSpec]:
    """The default table with the operator's ``[provider.models.<name>]`` tables applied.

    A table named like a default model changes only the keys it gives; any other name adds a
    model, starting from ``based_on`` (a default model) or from nothing, in which case it must
    say at least ``operations`` and ``sizes``. Every problem raises ConfigError naming the key.
    """
    table = dict(DEFAULT_MODELS)
    for name, raw in overrides.items():
        where = f"provider.models.{name}"
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}: must be a table")
        if len(name) > MAX_MODEL_NAME:
            raise ConfigError(f"{where}: a model's name is at most {MAX_MODEL_NAME} characters")
        table[name] = _apply(name, raw, where)
    return table


def _apply(name: str, raw: Mapping[str, Any], where: str) -> ModelSpec:
    unknown = sorted(set(raw) - set(_FIELDS) - {"based_on"})
    if unknown:
        known = ", ".join(["based_on", *_FIELDS])
        raise ConfigError(f"{where}.{unknown[0]}: unknown key (known keys: {known})")
    base: ModelSpec | None = DEFAULT_MODELS.get(name)
    if "based_on" in raw:
        based_on = raw["based_on"]
        if not isinstance(based_on, str) or based_on not in DEFAULT_MODELS:
            known = ", ".join(DEFAULT_MODELS)
            raise ConfigError(f"{where}.based_on: must name a default model ({known})")
        base = DEFAULT_MODELS[based_on]
    if base is None:
        missing = [key for key in ("operations", "sizes") if key not in raw]
        if missing:
            raise ConfigError(
                f"{where}.{missing[0]}: required for a new model "
                '(or start from a default with based_on = "dall-e-2")'
            )
        base = ModelSpec(name=name, operations=frozenset(), sizes=())
    changes: dict[str, Any] = {"name": name}
    for key, value in raw.items():
        if key != "based_on":
            changes[key] = _FIELDS[key](value, f"{where}.{key}", base)
    spec = dataclasses.replace(base, **changes)
    if "default_size" not in raw and spec.default_size and not spec.allows_size(spec.default_size):
        # Narrowing the sizes narrows the default with them.
        spec = dataclasses.replace(spec, default_size=spec.sizes[0] if spec.sizes else None)
    _check_consistent(spec, where)
    return spec


def _check_consistent(spec: ModelSpec, where: str) -> None:
    if not spec.operations:
        raise ConfigError(f"{where}.operations: must list at least one operation")
    if not spec.sizes and spec.free_size is None:
        raise ConfigError(f"{where}.sizes: must list at least one size (or set free_size)")
    if spec.default_size is not None and not spec.allows_size(spec.default_size):
        raise ConfigError(
            f"{where}.default_size: {spec.default_size!r} is not one of the model's sizes "
            f"({spec.describe_sizes()})"
        )
    vary_needs_edit = Operation.VARY in spec.operations and not spec.native_variations
    if vary_needs_edit and Operation.EDIT not in spec.operations:
        raise ConfigError(
            f'{where}.operations: "vary" needs "edit" too, or native_variations = true '
            "(variations are made through the edits endpoint otherwise)"
        )
    if vary_needs_edit and len(spec.vary_prompt) > spec.max_prompt_chars:
        raise ConfigError(
            f"{where}.vary_prompt: longer than max_prompt_chars ({spec.max_prompt_chars})"
        )


def _integer(low: int, high: int) -> Callable[[Any, str, ModelSpec], int]:
    def parse(value: Any, where: str, base: ModelSpec) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(f"{where}: must be an integer between {low} and {high}")
        return value

    return parse


def _number(low: float, high: float) -> Callable[[Any, str, ModelSpec], float]:
    def parse(value: Any, where: str, base: ModelSpec) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: must be a number between {low:g} and {high:g}")
        if not low <= value <= high:
            raise ConfigError(f"{where}: must be a number between {low:g} and {high:g}")
        return float(value)

    return parse


def _boolean(value: Any, where: str, base: ModelSpec) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: must be true or false")
    return value


def _text(value: Any, where: str, base: ModelSpec) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: must be a non-empty string")
    return value


def _strings(
    choices: frozenset[str] | None = None, *, allow_empty: bool = True
) -> Callable[[Any, str, ModelSpec], tuple[str, ...]]:
    def parse(value: Any, where: str, base: ModelSpec) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"{where}: must be a list of strings")
        if choices is not None:
            bad = [v for v in value if v not in choices]
            if bad:
                raise ConfigError(f"{where}: {bad[0]!r} is not one of {', '.join(sorted(choices))}")
        if not value and not allow_empty:
            raise ConfigError(f"{where}: must not be empty")
        return tuple(dict.fromkeys(value))

    return parse


def _operations(value: Any, where: str, base: ModelSpec) -> frozenset[Operation]:
    names = _strings(frozenset(Operation), allow_empty=False)(value, where, base)
    return frozenset(Operation(name) for name in names)


def _sizes(value: Any, where: str, base: ModelSpec) -> tuple[str, ...]:
    sizes = _strings()(value, where, base)
    for size in sizes:
        if size != "auto" and parse_size(size) is None:
            raise ConfigError(f'{where}: {size!r} is not "auto" or WIDTHxHEIGHT like "1024x1024"')
    return sizes


def _default_size(value: Any, where: str, base: ModelSpec) -> str:
    size = _text(value, where, base)
    if size != "auto" and parse_size(size) is None:
        raise ConfigError(f'{where}: {size!r} is not "auto" or WIDTHxHEIGHT like "1024x1024"')
    return size


_FREE_SIZE_KEYS: dict[str, Callable[[Any, str, ModelSpec], Any]] = {
    "multiple": _integer(1, 4096),
    "max_ratio": _number(1, 100),
    "max_edge": _integer(1, 100_000),
    "max_pixels": _integer(1, 10_000_000_000),
    "min_pixels": _integer(0, 10_000_000_000),
}


def _free_size(value: Any, where: str, base: ModelSpec) -> FreeSizeRule | None:
    """``false`` removes the rule; a table changes some of its limits."""
    if value is False:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: must be a table (multiple, max_ratio, ...) or false")
    unknown = sorted(set(value) - set(_FREE_SIZE_KEYS))
    if unknown:
        known = ", ".join(_FREE_SIZE_KEYS)
        raise ConfigError(f"{where}.{unknown[0]}: unknown key (known keys: {known})")
    changes = {k: _FREE_SIZE_KEYS[k](v, f"{where}.{k}", base) for k, v in value.items()}
    return dataclasses.replace(base.free_size or FreeSizeRule(), **changes)


def _input_rule(value: Any, where: str, base: ModelSpec) -> InputRule:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: must be a table (formats, max_bytes, square)")
    parsers: dict[str, Callable[[Any, str, ModelSpec], Any]] = {
        "formats": _strings(IMAGE_FORMATS, allow_empty=False),
        "max_bytes": _integer(1, 10_000_000_000),
        "square": _boolean,
    }
    unknown = sorted(set(value) - set(parsers))
    if unknown:
        raise ConfigError(
            f"{where}.{unknown[0]}: unknown key (known keys: formats, max_bytes, square)"
        )
    changes = {k: parsers[k](v, f"{where}.{k}", base) for k, v in value.items()}
    if "formats" in changes:
        changes["formats"] = frozenset(changes["formats"])
    return dataclasses.replace(base.edit_input, **changes)


#: The keys of a ``[provider.models.<name>]`` table (plus ``based_on``), one per ModelSpec field.
_FIELDS: dict[str, Callable[[Any, str, ModelSpec], Any]] = {
    "operations": _operations,
    "sizes": _sizes,
    "free_size": _free_size,
    "default_size": _default_size,
    "max_n": _integer(1, MAX_N),
    "qualities": _strings(),
    "styles": _strings(),
    "backgrounds": _strings(),
    "output_formats": _strings(IMAGE_FORMATS),
    "max_prompt_chars": _integer(1, 1_000_000),
    "response_format": _boolean,
    "native_variations": _boolean,
    "accepts_user": _boolean,
    "edit_input": _input_rule,
    "mask_max_bytes": _integer(1, 10_000_000_000),
    "vary_prompt": _text,
    "streams": _boolean,
    "input_fidelity": _boolean,
    "moderation": _boolean,
    "max_input_images": _integer(1, MAX_INPUT_IMAGES),
}


def sd_sizes(
    max_side: int, min_side: int, max_ratio: float
) -> tuple[tuple[str, ...], FreeSizeRule]:
    """What a Stable Diffusion backend offers up to the operator's ``max_side``: the listed
    :data:`SD_SIZES` that fit, and any other multiple of 8 within the sides and ``max_ratio``."""
    listed = tuple(size for size in SD_SIZES if max(parse_size(size) or (0, 0)) <= max_side)
    rule = FreeSizeRule(
        multiple=8,
        max_ratio=max_ratio,
        max_edge=max_side,
        max_pixels=max_side * max_side,
        min_pixels=min_side * min_side,
    )
    return listed, rule
