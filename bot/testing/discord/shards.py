"""Sharding as Discord does it: which gateway connection carries which guild's events.

A bot in many guilds splits its gateway into shards: each connection IDENTIFYs with
``shard: [shard_id, shard_count]`` and receives the events of the guilds whose
``(guild_id >> 22) % shard_count`` is its id; events that belong to no guild (DMs) go to shard 0.
A connection that IDENTIFYs without ``shard`` is shard 0 of 1 and gets everything.
"""

from __future__ import annotations

from typing import Any

from .payloads import snowflake

#: Events whose payload is the guild itself, so its ``id`` (not ``guild_id``) names the guild.
GUILD_EVENTS = frozenset({"GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE"})


class InvalidShard(ValueError):
    """IDENTIFY's ``shard`` is not ``[id, count]`` with ``0 <= id < count`` (close 4010)."""


def shard_of(guild_id: int, count: int) -> int:
    return (guild_id >> 22) % count


def placement(shard: Any) -> tuple[int, int]:
    """``(shard_id, shard_count)`` from an IDENTIFY's ``shard`` field (absent: ``(0, 1)``)."""
    if shard is None:
        return 0, 1
    if not (isinstance(shard, list) and len(shard) == 2):
        raise InvalidShard(f"shard must be [shard_id, shard_count], got {shard!r}")
    shard_id, count = shard
    if not (isinstance(shard_id, int) and isinstance(count, int)) or isinstance(shard_id, bool):
        raise InvalidShard(f"shard must hold two integers, got {shard!r}")
    if count < 1 or not 0 <= shard_id < count:
        raise InvalidShard(f"shard id {shard_id} is not within a count of {count}")
    return shard_id, count


def event_guild(event: str, data: Any) -> int | None:
    """The guild an event belongs to, or None (DMs and the like: shard 0's)."""
    if not isinstance(data, dict):
        return None
    value = data.get("id") if event in GUILD_EVENTS else data.get("guild_id")
    return int(value) if value else None


def snowflake_on_shard(shard_id: int, count: int) -> int:
    """A new snowflake for a guild that lands on ``shard_id`` of ``count`` shards."""
    if not 0 <= shard_id < count:
        raise ValueError(f"shard {shard_id} is not within a count of {count}")
    new = snowflake()
    timestamp, rest = new >> 22, new & ((1 << 22) - 1)
    timestamp += (shard_id - timestamp) % count  # a few ms later at most: still unique
    return (timestamp << 22) | rest
