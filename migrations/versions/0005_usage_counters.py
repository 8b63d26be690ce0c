"""Usage counters: the sums the quotas check, kept per guild, member and period.

Filled here from the ledger (every job row's n_charged and cost_micro_usd, in the periods it
was queued in, in its guild's time zone; a member's day counts only what came after their
last reset that day), so an upgraded database keeps its counts. From here on the job store
keeps them in step (bot.quotas.counters). Self-contained: it must keep doing what it did
when the code it was written with has moved on.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 5000


def upgrade() -> None:
    counters = op.create_table(
        "usage_counters",
        sa.Column("scope", sa.String(8), primary_key=True),
        sa.Column("guild_id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("user_id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("period", sa.String(10), primary_key=True),
        sa.Column("images", sa.BigInteger(), nullable=False),
        sa.Column("spend_micro", sa.BigInteger(), nullable=False),
    )
    assert counters is not None
    connection = op.get_bind()
    totals = _totals(connection)
    rows = [
        {
            "scope": scope,
            "guild_id": guild,
            "user_id": user,
            "period": period,
            "images": images,
            "spend_micro": spend,
        }
        for (scope, guild, user, period), (images, spend) in totals.items()
    ]
    for start in range(0, len(rows), BATCH):
        connection.execute(sa.insert(counters), rows[start : start + BATCH])


def downgrade() -> None:
    op.drop_table("usage_counters")


def _totals(connection: sa.Connection) -> dict[tuple[str, int, int, str], list[int]]:
    meta = sa.MetaData()
    jobs = sa.Table("jobs", meta, autoload_with=connection)
    guilds = sa.Table("guild_settings", meta, autoload_with=connection)
    resets = sa.Table("member_resets", meta, autoload_with=connection)
    zones = {
        guild: _zone(name)
        for guild, name in connection.execute(sa.select(guilds.c.guild_id, guilds.c.timezone))
    }
    reset_at = {
        (guild, user): _utc(moment)
        for guild, user, moment in connection.execute(
            sa.select(resets.c.guild_id, resets.c.user_id, resets.c.reset_at)
        )
    }
    totals: dict[tuple[str, int, int, str], list[int]] = {}
    # Read in pages by id: a server-side cursor (yield_per) stays open on PostgreSQL until the
    # transaction ends, and an open cursor on jobs blocks the next migration's ALTER TABLE.
    last = 0
    while True:
        page = connection.execute(
            sa.select(
                jobs.c.id,
                jobs.c.guild_id,
                jobs.c.user_id,
                jobs.c.queued_at,
                jobs.c.n_charged,
                jobs.c.cost_micro_usd,
            )
            .where(jobs.c.id > last)
            .order_by(jobs.c.id)
            .limit(BATCH)
        ).all()
        if not page:
            break
        last = page[-1][0]
        _add_up([row[1:] for row in page], zones, reset_at, totals)
    return totals


def _add_up(
    result: list[Any],
    zones: dict[int, Any],
    reset_at: dict[tuple[int, int], Any],
    totals: dict[tuple[str, int, int, str], list[int]],
) -> None:
    for guild_id, user_id, queued_at, images, spend in result:
        if not images and not spend:
            continue
        guild, user = guild_id or 0, user_id or 0
        moment = _utc(queued_at)
        local = moment.astimezone(zones.get(guild_id, UTC) if guild_id is not None else UTC)
        day, month = local.strftime("%Y-%m-%d"), local.strftime("%Y-%m")
        keys = [
            ("guild", guild, 0, day),
            ("guild", guild, 0, month),
            ("total", 0, 0, moment.strftime("%Y-%m-%d")),
            ("total", 0, 0, moment.strftime("%Y-%m")),
        ]
        reset = reset_at.get((guild, user))
        next_day = local.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        if reset is None or not (moment <= reset < next_day):
            keys.append(("member", guild, user, day))
        for key in keys:
            counted = totals.setdefault(key, [0, 0])
            counted[0] += images
            counted[1] += spend


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _utc(moment: datetime | str) -> datetime:
    if isinstance(moment, str):  # SQLite without the column's type: its stored text
        moment = datetime.fromisoformat(moment)
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
