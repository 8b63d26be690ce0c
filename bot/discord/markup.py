"""Discord's message markup: timestamps every member reads in their own zone, channel mentions.

Only the Discord layer writes it. The layers below pass datetimes and channel ids (in error
params too); :meth:`bot.discord.i18n.Catalog.error_text` turns them into markup here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any


def discord_time(moment: datetime, style: str = "R") -> str:
    """A Discord timestamp: each member sees it in their own language and time zone."""
    return f"<t:{int(moment.timestamp())}:{style}>"


def channel_list(channels: Iterable[int]) -> str:
    return ", ".join(f"<#{channel}>" for channel in sorted(channels))


def shown(value: Any) -> Any:
    """An error param as a member reads it: times relative, a set of channel ids as mentions."""
    if isinstance(value, datetime):
        return discord_time(value)
    if isinstance(value, frozenset) and all(isinstance(v, int) for v in value):
        return channel_list(value)
    return value
