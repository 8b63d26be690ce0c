"""The prices the README and config.example.toml quote are the ones the bot reserves."""

from __future__ import annotations

from pathlib import Path

from bot.config import ProviderSettings, QuotaSettings
from bot.quotas.prices import MICRO, PriceTable, estimate_cost, format_usd

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
EXAMPLE = (ROOT / "config.example.toml").read_text(encoding="utf-8")


def reserved(quality: str | None, partials: int = ProviderSettings().partial_images) -> int:
    """What a request of the default model reserves, with the default previews."""
    return estimate_cost(
        PriceTable(), "gpt-image-2", 1, "1024x1024", quality, partial_images=partials
    )


def test_the_quoted_reservations_per_quality_are_the_price_table() -> None:
    for quality in ("low", "medium", "high"):
        quoted = f"{quality} {format_usd(reserved(quality))}"
        assert quoted in README and quoted in EXAMPLE, quoted
    assert reserved(None) == reserved("auto") == reserved("high")


def test_the_quoted_image_counts_are_the_default_caps_at_those_prices() -> None:
    quotas = QuotaSettings()
    server, total = quotas.spend_per_month_usd, quotas.total_spend_per_month_usd
    assert (server, quotas.max_spend_per_month_usd, total) == (10.0, 100.0, 100.0)
    for quality in ("medium", "high"):
        for cap in (server, total):
            count = round(cap * MICRO) // reserved(quality)
            assert f"| {count:,} images |" in README, count
    assert f"{round(server * MICRO) // reserved('medium')} medium images" in EXAMPLE
