"""Prices of images, in integer micro-dollars so sums are exact.

Per-image models are priced from a table keyed by model, quality and size class ("square" for
1024x1024 and smaller, "large" for anything bigger). Token-priced models (gpt-image-2) are costed
from the ``usage`` the response reports; before a request runs, their cost is *estimated* from
the per-image table at the highest quality asked for, so an estimate errs on the side of the
operator's wallet. Defaults are the public prices in DESIGN.md section 3.

A streamed image's partial images (previews) cost 100 image output tokens each, at the model's
image output rate: reserved for as many as the request asks for, settled for those received.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.errors import ConfigError
from bot.providers import PARTIAL_IMAGE_TOKENS, ImageUsage, parse_size

MICRO = 1_000_000

#: (model, quality) -> (square price, large price) in USD per image. Quality "" = no qualities.
DEFAULT_IMAGE_PRICES: Mapping[tuple[str, str], tuple[float, float]] = {
    ("dall-e-3", "standard"): (0.04, 0.08),
    ("dall-e-3", "hd"): (0.08, 0.12),
    ("gpt-image-1", "low"): (0.011, 0.016),
    ("gpt-image-1", "medium"): (0.042, 0.063),
    ("gpt-image-1", "high"): (0.167, 0.25),
    ("gpt-image-1-mini", "low"): (0.005, 0.006),
    ("gpt-image-1-mini", "medium"): (0.011, 0.015),
    ("gpt-image-1-mini", "high"): (0.036, 0.052),
}
#: (model, size) -> USD per image, for models priced by exact size.
DEFAULT_SIZE_PRICES: Mapping[tuple[str, str], float] = {
    ("dall-e-2", "256x256"): 0.016,
    ("dall-e-2", "512x512"): 0.018,
    ("dall-e-2", "1024x1024"): 0.020,
}
#: USD per 1M tokens: text in, image in, image out.
DEFAULT_TOKEN_PRICES: Mapping[str, tuple[float, float, float]] = {
    "gpt-image-2": (5.0, 8.0, 30.0),
    "gpt-image-1.5": (5.0, 8.0, 30.0),
}
#: USD per 1M image output tokens of the per-image models, for their partial images (OpenAI's
#: published rates; token-priced models use the third of their ``token_prices``).
DEFAULT_OUTPUT_TOKEN_PRICES: Mapping[str, float] = {"gpt-image-1": 40.0, "gpt-image-1-mini": 8.0}
#: Per-image prices used to estimate token-priced models before they run (gpt-image-1's).
TOKEN_MODEL_ESTIMATE = "gpt-image-1"
#: The largest listed size of the per-image table's "large" class (1536x1024): a larger free
#: size is priced in proportion to its pixels.
LARGEST_LISTED_PIXELS = 1536 * 1024
#: Image input tokens reserved for each picture of a blend on a token-priced model: about the
#: most one 1536x1024 input takes with ``input_fidelity`` high (the usage reports the real
#: count, which is what is settled).
INPUT_IMAGE_TOKENS = 6_600
#: Price of an image of a model nobody priced: assume the dearest known, never zero.
UNKNOWN_MODEL_PRICE = 0.25


@dataclass(frozen=True)
class PriceTable:
    image_prices: Mapping[tuple[str, str], tuple[float, float]] = field(
        default_factory=lambda: dict(DEFAULT_IMAGE_PRICES)
    )
    size_prices: Mapping[tuple[str, str], float] = field(
        default_factory=lambda: dict(DEFAULT_SIZE_PRICES)
    )
    token_prices: Mapping[str, tuple[float, float, float]] = field(
        default_factory=lambda: dict(DEFAULT_TOKEN_PRICES)
    )
    #: Backend name -> USD per image, whatever the model, size or quality: the self-hosted
    #: backends (``price_per_image_usd``, 0 by default), so quotas count their images alike.
    backend_prices: Mapping[str, float] = field(default_factory=dict)
    output_token_prices: Mapping[str, float] = field(
        default_factory=lambda: dict(DEFAULT_OUTPUT_TOKEN_PRICES)
    )


def _is_large(size: str | None) -> bool:
    parsed = parse_size(size) if size else None
    return parsed is not None and parsed[0] * parsed[1] > 1024 * 1024


def _per_image(
    table: PriceTable, model: str, size: str | None, quality: str | None, *, unsized_large: bool
) -> float:
    by_size = {s: p for (m, s), p in table.size_prices.items() if m == model}
    if by_size:
        return by_size.get(size or "", max(by_size.values()))
    priced_as = TOKEN_MODEL_ESTIMATE if model in table.token_prices else model
    qualities = {q: p for (m, q), p in table.image_prices.items() if m == priced_as}
    if not qualities:
        return UNKNOWN_MODEL_PRICE
    if quality in qualities:
        pair = qualities[quality]
    else:  # "auto", unset or unknown: the dearest quality, so estimates never fall short
        pair = max(qualities.values(), key=lambda p: p[1])
    if unsized_large and size is None:
        return max(pair)  # the upload's shape decides: maybe a large image
    if not _is_large(size):
        return pair[0]
    if model not in table.token_prices:
        return pair[1]
    # A token-priced model's free size beyond the largest listed one (gpt-image-2's upscales,
    # up to 8.3 MP) makes more output tokens: the large price grows with the pixels, so the
    # estimate still errs on the side of the operator's wallet.
    parsed = parse_size(size or "")
    pixels = parsed[0] * parsed[1] if parsed else 0
    return pair[1] * max(1.0, pixels / LARGEST_LISTED_PIXELS)


def estimate_cost(
    table: PriceTable,
    model: str,
    n: int,
    size: str | None,
    quality: str | None,
    *,
    backend: str | None = None,
    partial_images: int,
    input_images: int = 0,
) -> int:
    """The most ``n`` images may cost, in micro-dollars, before the provider is asked.

    ``size`` None means an upload's shape decides (an edit or variation without a chosen size):
    priced as the dearer size class, since a landscape photo's edit is a large image.
    ``backend``: the backend that makes them; a self-hosted one has its own flat price.
    ``partial_images``: the previews each image is streamed with (0 when not streamed).
    ``input_images``: the pictures of a blend, whose input tokens a token-priced model charges
    for each (:data:`INPUT_IMAGE_TOKENS`; a per-image price has no input part)."""
    if backend is not None and backend in table.backend_prices:
        return round(table.backend_prices[backend] * n * MICRO)
    per_image = _per_image(table, model, size, quality, unsized_large=True)
    rates = table.token_prices.get(model)
    inputs = round(input_images * INPUT_IMAGE_TOKENS * rates[1]) if rates is not None else 0
    outputs = round(per_image * n * MICRO) + n * partial_images_cost(table, model, partial_images)
    return outputs + inputs


def partial_images_cost(table: PriceTable, model: str, partials: int) -> int:
    """What ``partials`` partial images of ``model`` cost, in micro-dollars."""
    rates = table.token_prices.get(model)
    if rates is not None:
        rate = rates[2]
    else:
        known = [r[2] for r in table.token_prices.values()] + [*table.output_token_prices.values()]
        rate = table.output_token_prices.get(model, max(known, default=0.0))
    return round(partials * PARTIAL_IMAGE_TOKENS * rate)  # USD per 1M tokens = micro-USD each


def settle_cost(
    table: PriceTable,
    model: str,
    delivered: int,
    size: str | None,
    quality: str | None,
    usage: ImageUsage | None,
    *,
    backend: str | None = None,
    partial_images: int,
) -> int:
    """What the finished request cost, in micro-dollars: from tokens when the model is priced
    by tokens and the provider reported them, else from the per-image table (a self-hosted
    ``backend``: its flat price).

    ``partial_images``: the previews received (``ImageResult.partial_images``); the tokens of
    a ``usage`` already count them (``ImageResult.usage``), a per-image price does not."""
    if backend is not None and backend in table.backend_prices:
        return round(table.backend_prices[backend] * delivered * MICRO)
    rates = table.token_prices.get(model)
    if rates is not None and usage is not None and usage.total_tokens > 0:
        text_in, image_in, image_out = rates
        text_tokens = usage.input_text_tokens
        image_tokens = usage.input_image_tokens
        if text_tokens + image_tokens == 0:
            text_tokens = usage.input_tokens
        output = usage.output_image_tokens or usage.output_tokens
        usd = (text_tokens * text_in + image_tokens * image_in + output * image_out) / MICRO
        return round(usd * MICRO)
    per_image = _per_image(table, model, size, quality, unsized_large=False)
    return round(per_image * delivered * MICRO) + partial_images_cost(table, model, partial_images)


def format_usd(micro: int) -> str:
    """``$0.042`` style: enough decimals for cheap images, no float noise."""
    usd = micro / MICRO
    if usd == 0:
        return "$0"
    if usd >= 1:
        return f"${usd:,.2f}"
    return f"${usd:.4f}".rstrip("0").rstrip(".") if usd < 0.01 else f"${usd:.3f}".rstrip("0")


def price_table(
    raw: Mapping[str, Any], backend_prices: Mapping[str, float] | None = None
) -> PriceTable:
    """The defaults with the operator's ``[prices]`` overrides; ConfigError names a bad key.

    Keys are ``"MODEL.QUALITY" = [square, larger]`` (USD per image), ``"MODEL.WxH" = price``
    (priced by exact size, like dall-e-2) and ``"MODEL.tokens" = [text in, image in, image out]``
    (USD per million tokens). ``backend_prices``: the self-hosted backends' flat prices.
    """
    image_prices = dict(DEFAULT_IMAGE_PRICES)
    size_prices = dict(DEFAULT_SIZE_PRICES)
    token_prices = dict(DEFAULT_TOKEN_PRICES)
    for key, value in raw.items():
        where = f"prices.{key}"
        model, dot, kind = key.rpartition(".")
        if not dot or not model:
            raise ConfigError(
                f"{where}: key must look like MODEL.QUALITY, MODEL.WxH or MODEL.tokens"
            )
        if kind == "tokens":
            token_prices[model] = _numbers(where, value, 3)  # type: ignore[assignment]
        elif parse_size(kind) is not None:
            size_prices[(model, kind)] = _numbers(where, [value], 1)[0]
        else:
            square, large = _numbers(where, value, 2)
            image_prices[(model, kind)] = (square, large)
    return PriceTable(image_prices, size_prices, token_prices, dict(backend_prices or {}))


def _numbers(where: str, value: Any, count: int) -> tuple[float, ...]:
    if (
        not isinstance(value, list)
        or len(value) != count
        or not all(isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in value)
    ):
        raise ConfigError(f"{where}: must be {count} non-negative number(s)")
    return tuple(float(v) for v in value)
