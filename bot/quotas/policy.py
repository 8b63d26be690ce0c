"""Who may ask for how many images: the operator's ceilings, the guild's choices, the periods.

Pure functions over plain values, so the rules are easy to read and test, and every refusal a
quota or a rule raises; the database side (counting usage, deciding under the locks) is in
:mod:`bot.quotas.ledger`, the checks that need no database in :mod:`bot.quotas.admission`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.config import QuotaSettings
from bot.db.guilds import format_channels as format_channels
from bot.db.guilds import parse_channels as parse_channels
from bot.db.models import GuildSettings, RoleLimit
from bot.errors import BotError
from bot.quotas.prices import MICRO, format_usd


class QuotaError(BotError):
    """A request refused by a quota or a rule; nothing was charged."""

    key = "quota.error"
    template = "This request is not allowed by the server's image limits."


class GuildDailyLimit(QuotaError):
    key = "quota.guild_day"
    template = (
        "This server has used its {limit} images for today ({remaining} left, you asked for "
        "{n}). The limit resets {resets}."
    )


class GuildMonthlyLimit(QuotaError):
    key = "quota.guild_month"
    template = (
        "This server has used its {limit} images for this month ({remaining} left, you asked "
        "for {n}). The limit resets {resets}."
    )


class GuildBudget(QuotaError):
    key = "quota.guild_spend"
    template = (
        "This server has used its image budget of {limit} for this month ({remaining} left; "
        "this request may cost up to {cost}). The budget resets {resets}."
    )


class MemberDailyLimit(QuotaError):
    key = "quota.member_day"
    template = (
        "You have used your {limit} images for today ({remaining} left, you asked for {n}). "
        "Your limit resets {resets}."
    )


class ChannelNotAllowed(QuotaError):
    key = "quota.channel"
    template = "Images can't be made in this channel. Try {channels}."


class DirectMessagesOff(QuotaError):
    key = "quota.dm_off"
    template = "Images can't be made in direct messages. Use the bot in a server."


class QueueFull(QuotaError):
    key = "quota.queue_member"
    template = "You already have {count} requests waiting. Wait for one to finish, then try again."


class GuildQueueFull(QuotaError):
    key = "quota.queue_guild"
    template = (
        "This server already has {count} requests waiting. Please try again in a few minutes."
    )


class ModelNotAllowed(QuotaError):
    key = "quota.model"
    template = "The model {model} is not available here; choose one of: {allowed}."


class SizeNotAllowed(QuotaError):
    key = "quota.size"
    template = "The size {size} is not available here; choose one of: {allowed}."


class QualityNotAllowed(QuotaError):
    key = "quota.quality"
    template = "The quality {quality} is not available here; choose one of: {allowed}."


class TooManyAtOnce(QuotaError):
    key = "quota.max_n"
    template = "At most {max_n} images per request here, not {n}."


class GuildNotAllowed(QuotaError):
    key = "quota.guild_not_allowed"
    template = "This bot is private: it doesn't make images in this server."


class TotalBudget(QuotaError):
    """The operator's ceiling over every server: ``period`` is "day" or "month" (for metrics)."""

    key = "quota.total_month"
    template = (
        "The bot has reached its spending limit for this month, so it can't make images for "
        "anyone right now. It resets {resets}."
    )
    period = "month"


class TotalDailyBudget(TotalBudget):
    key = "quota.total_day"
    template = (
        "The bot has reached its spending limit for today, so it can't make images for anyone "
        "right now. It resets {resets}."
    )
    period = "day"


class TooManyRequests(QuotaError):
    key = "quota.rate"
    template = "You can start {limit} requests a minute. Try again in {seconds} s."


@dataclass(frozen=True)
class Limits:
    """What applies to one guild now (its choices, within the operator's ceilings)."""

    images_per_day: int
    images_per_month: int
    spend_per_month_micro: int
    member_images_per_day: int
    timezone: str = "UTC"
    allowed_channels: frozenset[int] = frozenset()


def guild_limits(quotas: QuotaSettings, row: GuildSettings | None) -> Limits:
    def pick(field: str, default: int, ceiling: int) -> int:
        chosen: int | None = getattr(row, field) if row is not None else None
        return min(chosen if chosen is not None else default, ceiling)

    return Limits(
        images_per_day=pick("images_per_day", quotas.images_per_day, quotas.max_images_per_day),
        images_per_month=pick(
            "images_per_month", quotas.images_per_month, quotas.max_images_per_month
        ),
        spend_per_month_micro=pick(
            "spend_per_month_micro",
            round(quotas.spend_per_month_usd * MICRO),
            round(quotas.max_spend_per_month_usd * MICRO),
        ),
        member_images_per_day=pick(
            "member_images_per_day",
            quotas.member_images_per_day,
            quotas.max_member_images_per_day,
        ),
        timezone=(row.timezone if row is not None and row.timezone else "UTC"),
        allowed_channels=parse_channels(row.allowed_channels if row is not None else None),
    )


def dm_limits(quotas: QuotaSettings) -> Limits:
    """Direct messages: only the per-user daily limit applies (the operator pays)."""
    big = 2**62
    return Limits(big, big, big, quotas.dm_images_per_day)


def member_limit(limits: Limits, rules: Iterable[RoleLimit], role_ids: Iterable[int]) -> int | None:
    """The member's daily limit, None when exempt.

    A role's limit replaces the server's per-member limit for members with that role (so a
    "Newcomers" role can get less and a "Supporters" role more); a member with several such roles
    gets the most generous one.
    """
    roles = set(role_ids)
    best: int | None = None
    for rule in rules:
        if rule.role_id not in roles:
            continue
        if rule.exempt:
            return None
        if rule.images_per_day is not None:
            best = max(best or 0, rule.images_per_day)
    return limits.member_images_per_day if best is None else best


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def is_valid_timezone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


@dataclass(frozen=True)
class Periods:
    """The current day and month in the guild's time zone, as UTC instants."""

    day_start: datetime
    next_day: datetime
    month_start: datetime
    next_month: datetime


def periods(now: datetime, timezone: str) -> Periods:
    local = now.astimezone(zone(timezone))
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    month = day.replace(day=1)
    next_day = day + timedelta(days=1)  # wall-clock arithmetic: right across DST changes
    if month.month == 12:
        next_month = month.replace(year=month.year + 1, month=1)
    else:
        next_month = month.replace(month=month.month + 1)
    return Periods(
        day.astimezone(UTC),
        next_day.astimezone(UTC),
        month.astimezone(UTC),
        next_month.astimezone(UTC),
    )


def usd(micro: int) -> str:
    return format_usd(max(micro, 0))
