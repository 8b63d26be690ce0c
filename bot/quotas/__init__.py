"""Quotas and prices: what a request may cost and what it did cost."""

from bot.quotas.prices import PriceTable, estimate_cost, format_usd, price_table, settle_cost

__all__ = ["PriceTable", "estimate_cost", "format_usd", "price_table", "settle_cost"]
