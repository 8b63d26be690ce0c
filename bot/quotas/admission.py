"""What a request must pass before it may cost anything: the rules and caps that need no lock.

The job runner checks these twice: once early (``JobRunner.precheck``, before the bot answers
Discord or downloads an upload, so a refused request costs a few reads) and once when it
admits the job, where the ledger's locks make the quota answer exact. The errors they raise
are in :mod:`bot.quotas.policy` with the other refusals.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

from bot.config import JobsSettings, QuotaSettings
from bot.generation import ImageOrder
from bot.providers import ModelSpec
from bot.providers.checks import option_choices
from bot.quotas.policy import (
    GuildNotAllowed,
    GuildQueueFull,
    ModelNotAllowed,
    QualityNotAllowed,
    QueueFull,
    SizeNotAllowed,
    TooManyAtOnce,
    TotalBudget,
)
from bot.quotas.prices import MICRO, format_usd

log = logging.getLogger(__name__)


def check_guild_allowed(quotas: QuotaSettings, guild_id: int | None) -> None:
    """A private bot works only in the operator's servers (DMs have their own switch)."""
    if guild_id is not None and quotas.allowed_guilds and guild_id not in quotas.allowed_guilds:
        raise GuildNotAllowed()


def check_rules(quotas: QuotaSettings, order: ImageOrder, model: str) -> None:
    if quotas.allowed_models and model not in quotas.allowed_models:
        raise ModelNotAllowed(model=model, allowed=", ".join(quotas.allowed_models))
    if quotas.allowed_sizes and order.size and order.size not in quotas.allowed_sizes:
        raise SizeNotAllowed(size=order.size, allowed=", ".join(quotas.allowed_sizes))
    allowed = quotas.allowed_qualities
    if allowed and order.quality and order.quality not in allowed:
        raise QualityNotAllowed(quality=order.quality, allowed=", ".join(allowed))
    if order.n > quotas.max_n:
        raise TooManyAtOnce(max_n=quotas.max_n, n=order.n)


def with_default_quality(quotas: QuotaSettings, order: ImageOrder, spec: ModelSpec) -> ImageOrder:
    """``order`` with the operator's quality when the member picked none.

    Without it the model's own default applies (``auto`` on the GPT image models), which the
    quota reserves at the dearest price; the operator's default makes the bill predictable.
    """
    default = quotas.default_quality or next(iter(quotas.allowed_qualities), "")
    if order.quality is not None or not default or not spec.supports(order.operation):
        return order
    if default not in option_choices(spec, order.operation).qualities:
        return order  # the model (or a variation) takes no such quality
    return replace(order, quality=default)


class Origin(Protocol):
    """Where a request comes from (a ``bot.jobs.JobOrigin``), as far as these rules ask."""

    @property
    def guild_id(self) -> int | None: ...


def check_origin(quotas: QuotaSettings, origin: Origin) -> None:
    check_guild_allowed(quotas, origin.guild_id)


def check_queue_caps(jobs: JobsSettings, member_waiting: int, guild_waiting: int) -> None:
    """Refuse a request when the member or the guild already has as many waiting as allowed.

    ``*_waiting`` count the queued requests and those being admitted right now."""
    if member_waiting >= jobs.max_queued_per_member:
        raise QueueFull(count=member_waiting)
    if guild_waiting >= jobs.max_queued_per_guild:
        raise GuildQueueFull(count=guild_waiting)


class SpendCapWatch:
    """Tells the operator when a total spend cap refuses requests: a log line, a metric.

    The log line is written once per cap and period (a refused burst would otherwise write one
    line per request); ``on_refusal`` (the metrics) hears every refusal.
    """

    def __init__(self, quotas: QuotaSettings) -> None:
        self._quotas = quotas
        self._told: set[tuple[str, str]] = set()
        self.on_refusal: Callable[[TotalBudget], None] | None = None

    def refused(self, error: TotalBudget) -> None:
        if self.on_refusal is not None:
            self.on_refusal(error)
        resets = str(error.params.get("resets", ""))
        if (error.period, resets) in self._told:
            return
        self._told.add((error.period, resets))
        cap = (
            self._quotas.total_spend_per_day_usd
            if error.period == "day"
            else self._quotas.total_spend_per_month_usd
        )
        log.warning(
            "the total spend cap per %s (%s, quotas.total_spend_per_%s_usd) is reached: "
            "requests are refused until it resets",
            error.period,
            format_usd(round(cap * MICRO)),
            error.period,
        )
