"""What the operator is charged for, as the embed and the ledger will show it."""

from __future__ import annotations

import pytest

from bot.providers import ImageUsage
from bot.quotas import PriceTable, estimate_cost, format_usd, settle_cost

TABLE = PriceTable()


@pytest.mark.parametrize(
    ("model", "n", "size", "quality", "usd"),
    [
        ("dall-e-2", 1, "256x256", None, 0.016),
        ("dall-e-2", 3, "512x512", None, 0.054),
        ("dall-e-2", 2, "1024x1024", None, 0.040),
        ("dall-e-3", 1, "1024x1024", "standard", 0.04),
        ("dall-e-3", 1, "1792x1024", "hd", 0.12),
        ("gpt-image-1", 2, "1024x1024", "low", 0.022),
        ("gpt-image-1", 1, "1536x1024", "high", 0.25),
        ("gpt-image-1-mini", 4, "1024x1024", "medium", 0.044),
        # Unset or "auto" quality is estimated at the dearest quality.
        ("gpt-image-1", 1, "1024x1024", "auto", 0.167),
        ("gpt-image-2", 1, "1024x1024", None, 0.167),
        ("some-local-model", 1, "1024x1024", None, 0.25),
    ],
)
def test_estimates(model: str, n: int, size: str, quality: str | None, usd: float) -> None:
    assert estimate_cost(TABLE, model, n, size, quality, partial_images=0) == round(usd * 1_000_000)


def test_a_free_size_beyond_the_listed_ones_is_reserved_by_its_pixels() -> None:
    """gpt-image-2's upscale to 2880x2880 has 5.27 times 1536x1024's pixels, and tokens."""
    large = estimate_cost(TABLE, "gpt-image-2", 1, "1536x1024", "high", partial_images=0)
    huge = estimate_cost(TABLE, "gpt-image-2", 1, "2880x2880", "high", partial_images=0)
    assert large == 250_000
    assert huge == round(250_000 * 2880 * 2880 / (1536 * 1024))
    # ... and never less than the large price: a 1024x1536 portrait stays at it.
    assert estimate_cost(TABLE, "gpt-image-2", 1, "1024x1536", "high", partial_images=0) == large


@pytest.mark.parametrize(
    ("model", "partials", "usd"),
    [
        # gpt-image-1's per-image price plus 100 image output tokens a partial at $40 per 1M
        ("gpt-image-1", 2, 0.042 + 2 * 0.004),
        ("gpt-image-1-mini", 3, 0.011 + 3 * 0.0008),
        # gpt-image-2: estimated at gpt-image-1's price, its partials at its own $30 per 1M
        ("gpt-image-2", 1, 0.042 + 0.003),
        # a model nobody priced: the dearest known rate
        ("some-local-model", 1, 0.25 + 0.004),
    ],
)
def test_estimates_reserve_each_partial_image(model: str, partials: int, usd: float) -> None:
    cost = estimate_cost(TABLE, model, 1, "1024x1024", "medium", partial_images=partials)
    assert cost == round(usd * 1_000_000)
    assert (
        estimate_cost(TABLE, model, 2, "1024x1024", "medium", partial_images=partials) == 2 * cost
    )


def test_settling_a_per_image_model_adds_the_partials_received() -> None:
    plain = settle_cost(TABLE, "gpt-image-1", 1, "1024x1024", "medium", None, partial_images=0)
    streamed = settle_cost(TABLE, "gpt-image-1", 1, "1024x1024", "medium", None, partial_images=2)
    assert (plain, streamed) == (42_000, 42_000 + 2 * 4_000)


def test_token_priced_models_settle_from_usage() -> None:
    usage = ImageUsage(
        input_tokens=50,
        output_tokens=4160,
        total_tokens=4210,
        input_text_tokens=40,
        input_image_tokens=10,
        output_image_tokens=4160,
    )
    # 40 * $5 + 10 * $8 + 4160 * $30 per million tokens
    expected = round((40 * 5 + 10 * 8 + 4160 * 30) / 1_000_000 * 1_000_000)
    assert settle_cost(TABLE, "gpt-image-2", 1, "1024x1024", "high", usage, partial_images=0) == (
        expected
    )
    # A streamed image's usage already counts its partials (ImageResult.usage): not twice.
    assert settle_cost(TABLE, "gpt-image-2", 1, "1024x1024", "high", usage, partial_images=2) == (
        expected
    )


def test_settle_without_usage_uses_delivered_count() -> None:
    assert settle_cost(TABLE, "dall-e-2", 2, "256x256", None, None, partial_images=0) == 32_000


@pytest.mark.parametrize(
    ("micro", "text"),
    [(0, "$0"), (16_000, "$0.016"), (40_000, "$0.04"), (5_000, "$0.005"), (1_234_567, "$1.23")],
)
def test_format(micro: int, text: str) -> None:
    assert format_usd(micro) == text


def test_a_blend_reserves_each_pictures_input_tokens_where_tokens_are_priced() -> None:
    """gpt-image-2 prices image input tokens ($8 per 1M): each picture of a blend reserves
    INPUT_IMAGE_TOKENS of them; gpt-image-1's per-image price has no input part."""
    from bot.quotas.prices import INPUT_IMAGE_TOKENS

    def reserve(model: str, pictures: int) -> int:
        return estimate_cost(
            TABLE, model, 1, "1024x1024", "low", partial_images=0, input_images=pictures
        )

    assert reserve("gpt-image-2", 5) - reserve("gpt-image-2", 0) == 5 * INPUT_IMAGE_TOKENS * 8
    assert reserve("gpt-image-2", 2) < reserve("gpt-image-2", 5)
    assert reserve("gpt-image-1", 5) == reserve("gpt-image-1", 0) == 11_000
