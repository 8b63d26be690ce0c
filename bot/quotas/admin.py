"""What server admins change: the guild's limits, time zone, channels, role rules and resets.

Every change is checked against the operator's ceilings *before* it is stored, so an admin is
told at once that a value is too high rather than finding it silently capped later. Each write
takes the guild's lock (:func:`bot.quotas.ledger.lock_guild`) in the same transaction, so a
change and a reservation in the same guild never interleave: a request is judged entirely by the
old rules or entirely by the new ones. No Discord imports: the Discord layer only formats.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import available_timezones

from sqlalchemy import delete, select

from bot.config import QuotaSettings
from bot.db import Sessions
from bot.db.models import MemberReset, RoleLimit, utcnow
from bot.errors import BotError
from bot.quotas import counters
from bot.quotas.ledger import lock_guild
from bot.quotas.policy import format_channels, is_valid_timezone, parse_channels
from bot.quotas.prices import MICRO, format_usd


class LimitAboveCeiling(BotError):
    key = "quota.ceiling"
    template = "That is above the bot operator's ceiling of {ceiling}."


class DayAboveCeiling(LimitAboveCeiling):
    key = "quota.ceiling.day"
    template = (
        "This server's images per day can be at most {ceiling} (the bot operator's ceiling); "
        "{value} is too many."
    )


class MonthAboveCeiling(LimitAboveCeiling):
    key = "quota.ceiling.month"
    template = (
        "This server's images per month can be at most {ceiling} (the bot operator's ceiling); "
        "{value} is too many."
    )


class SpendAboveCeiling(LimitAboveCeiling):
    key = "quota.ceiling.spend"
    template = (
        "This server's spend per month can be at most {ceiling} (the bot operator's ceiling); "
        "{value} is too much."
    )


class MemberAboveCeiling(LimitAboveCeiling):
    key = "quota.ceiling.member"
    template = (
        "A member's images per day can be at most {ceiling} (the bot operator's ceiling); "
        "{value} is too many."
    )


class NegativeLimit(BotError):
    key = "quota.negative"
    template = "A limit can't be negative ({value}). Use 0 to stop image making."


class UnknownTimezone(BotError):
    key = "quota.timezone"
    template = (
        "“{name}” is not a time zone I know. Use a name like Asia/Seoul, Europe/Berlin, "
        "America/New_York or UTC."
    )


class NothingToChange(BotError):
    key = "quota.nothing"
    template = "Nothing was changed: choose at least one option."


@dataclass(frozen=True)
class LimitChanges:
    """The options an admin gave to ``/quota set``; None = leave as it is."""

    images_per_day: int | None = None
    images_per_month: int | None = None
    spend_per_month_usd: float | None = None
    member_images_per_day: int | None = None
    timezone: str | None = None

    def is_empty(self) -> bool:
        return all(getattr(self, name) is None for name in self.__dataclass_fields__)


_ZONES_BY_LOWER: dict[str, str] = {}


def canonical_timezone(name: str) -> str | None:
    """The IANA name ``name`` means ("asia/seoul" -> "Asia/Seoul"), or None if there is none."""
    if not _ZONES_BY_LOWER:
        _ZONES_BY_LOWER.update({zone.lower(): zone for zone in available_timezones()})
        _ZONES_BY_LOWER.setdefault("utc", "UTC")
    text = name.strip().replace(" ", "_")
    found = _ZONES_BY_LOWER.get(text.lower())
    if found is not None:
        return found
    return text if text and is_valid_timezone(text) else None


def timezone_suggestions(typed: str, limit: int = 25) -> list[str]:
    """Time zones containing what was typed, best first (for autocomplete)."""
    canonical_timezone("UTC")  # fills the table
    needle = typed.strip().replace(" ", "_").lower()
    zones = sorted(_ZONES_BY_LOWER.values())
    starts = [z for z in zones if z.lower().startswith(needle)]
    inside = [z for z in zones if needle in z.lower() and z not in starts]
    return (starts + inside)[:limit]


def _check(value: float, ceiling: float, error: type[LimitAboveCeiling], shown: str) -> None:
    if value < 0:
        raise NegativeLimit(value=shown)
    if value > ceiling:
        limit = format_usd(round(ceiling * MICRO)) if error is SpendAboveCeiling else f"{ceiling:,}"
        raise error(ceiling=limit, value=shown)


def check_changes(quotas: QuotaSettings, changes: LimitChanges) -> str | None:
    """Refuse the first value below zero or above its ceiling; the canonical time zone."""
    if changes.is_empty():
        raise NothingToChange()
    if changes.images_per_day is not None:
        value = changes.images_per_day
        _check(value, quotas.max_images_per_day, DayAboveCeiling, f"{value:,}")
    if changes.images_per_month is not None:
        value = changes.images_per_month
        _check(value, quotas.max_images_per_month, MonthAboveCeiling, f"{value:,}")
    if changes.spend_per_month_usd is not None:
        usd = changes.spend_per_month_usd
        shown = format_usd(round(usd * MICRO)) if usd >= 0 else str(usd)
        _check(usd, quotas.max_spend_per_month_usd, SpendAboveCeiling, shown)
    if changes.member_images_per_day is not None:
        value = changes.member_images_per_day
        _check(value, quotas.max_member_images_per_day, MemberAboveCeiling, f"{value:,}")
    if changes.timezone is None:
        return None
    zone = canonical_timezone(changes.timezone)
    if zone is None:
        raise UnknownTimezone(name=changes.timezone[:64])
    return zone


async def apply_changes(
    sessions: Sessions, quotas: QuotaSettings, guild_id: int, changes: LimitChanges
) -> None:
    """Store the admin's limits (after :func:`check_changes`) under the guild's lock."""
    zone = check_changes(quotas, changes)
    async with sessions() as session, session.begin():
        row = await lock_guild(session, guild_id)
        if changes.images_per_day is not None:
            row.images_per_day = changes.images_per_day
        if changes.images_per_month is not None:
            row.images_per_month = changes.images_per_month
        if changes.spend_per_month_usd is not None:
            row.spend_per_month_micro = round(changes.spend_per_month_usd * MICRO)
        if changes.member_images_per_day is not None:
            row.member_images_per_day = changes.member_images_per_day
        if zone is not None and zone != row.timezone:
            row.timezone = zone
            await counters.rebuild_guild(session, guild_id, zone, utcnow())


async def set_role_rule(
    sessions: Sessions,
    quotas: QuotaSettings,
    guild_id: int,
    role_id: int,
    *,
    images_per_day: int | None = None,
    exempt: bool | None = None,
) -> RoleLimit | None:
    """Create or change a role's rule; a rule left with neither a limit nor an exemption is
    deleted (it would change nothing). Returns the rule as stored, or None when deleted."""
    if images_per_day is None and exempt is None:
        raise NothingToChange()
    if images_per_day is not None:
        ceiling = quotas.max_member_images_per_day
        _check(images_per_day, ceiling, MemberAboveCeiling, f"{images_per_day:,}")
    async with sessions() as session, session.begin():
        await lock_guild(session, guild_id)
        stored = await session.get(RoleLimit, (guild_id, role_id))
        rule = stored or RoleLimit(
            guild_id=guild_id, role_id=role_id, images_per_day=None, exempt=False
        )
        if images_per_day is not None:
            rule.images_per_day = images_per_day
        if exempt is not None:
            rule.exempt = exempt
        if rule.images_per_day is None and not rule.exempt:
            if stored is not None:
                await session.delete(stored)
            return None
        if stored is None:
            session.add(rule)
        return RoleLimit(
            guild_id=guild_id,
            role_id=role_id,
            images_per_day=rule.images_per_day,
            exempt=rule.exempt,
        )


async def remove_role_rule(sessions: Sessions, guild_id: int, role_id: int) -> bool:
    """Delete a role's rule; False when the role had none."""
    async with sessions() as session, session.begin():
        await lock_guild(session, guild_id)
        result = await session.execute(
            delete(RoleLimit).where(RoleLimit.guild_id == guild_id, RoleLimit.role_id == role_id)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


async def role_rules(sessions: Sessions, guild_id: int) -> list[RoleLimit]:
    async with sessions() as session:
        rows = await session.execute(
            select(RoleLimit).where(RoleLimit.guild_id == guild_id).order_by(RoleLimit.role_id)
        )
        return list(rows.scalars())


async def change_channels(
    sessions: Sessions,
    guild_id: int,
    *,
    add: int | None = None,
    remove: int | None = None,
    clear: bool = False,
) -> tuple[frozenset[int], bool]:
    """Add a channel to, or remove one from, the allowed list (empty = everywhere).

    Returns the new list and whether anything changed (removing an unlisted channel does not).
    """
    async with sessions() as session, session.begin():
        row = await lock_guild(session, guild_id)
        before = parse_channels(row.allowed_channels)
        after = set(before)
        if clear:
            after.clear()
        if add is not None:
            after.add(add)
        if remove is not None:
            after.discard(remove)
        row.allowed_channels = format_channels(after)
        return frozenset(after), frozenset(after) != before


async def reset_member(
    sessions: Sessions, guild_id: int, user_id: int, now: datetime | None = None
) -> datetime:
    """The member's daily count starts again from ``now`` (what they used before is forgiven)."""
    now = now or utcnow()
    async with sessions() as session, session.begin():
        guild = await lock_guild(session, guild_id)
        row = await session.get(MemberReset, (guild_id, user_id))
        if row is None:
            session.add(MemberReset(guild_id=guild_id, user_id=user_id, reset_at=now))
        else:
            row.reset_at = now
        await counters.reset_member(session, guild_id, user_id, now, guild.timezone or "UTC")
    return now
