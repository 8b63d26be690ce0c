"""The audit channel's outbox: an entry per job and per refusal, written where it happens and
posted later by a background task, so an entry never delays or fails a member's job.

Only this module writes ``audit_entries``. Nothing is written for a server without an audit
channel (``guild_settings.audit_channel_id``).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from bot.db import Sessions
from bot.db.models import AuditEntry, GuildSettings

#: Longest prompt an entry keeps (Discord embeds show 4096 characters of description).
PROMPT_LIMIT = 1000


async def audit_channel_of(sessions: Sessions, guild_id: int | None) -> int | None:
    """The server's audit channel, None when it has none (or for direct messages)."""
    if guild_id is None:
        return None
    async with sessions() as session:
        channel: int | None = await session.scalar(
            select(GuildSettings.audit_channel_id).where(GuildSettings.guild_id == guild_id)
        )
    return channel


async def audit_refusal(
    sessions: Sessions,
    *,
    guild_id: int | None,
    user_id: int,
    command: str,
    prompt: str,
    reason: str,
    details: dict[str, Any] | None = None,
) -> None:
    """Record that a request was refused before it was queued (``reason``: ``blocklist``,
    ``precheck``, ...; ``details``: e.g. the flagged categories, never the matched term)."""
    channel = await audit_channel_of(sessions, guild_id)
    if channel is None or guild_id is None:
        return
    body = {
        "user_id": user_id,
        "command": command,
        "prompt": prompt[:PROMPT_LIMIT],
        "outcome": "refused",
        "reason": reason,
        **(details or {}),
    }
    async with sessions() as session, session.begin():
        session.add(
            AuditEntry(
                guild_id=guild_id,
                channel_id=channel,
                kind="refusal",
                body=json.dumps(body, ensure_ascii=False),
            )
        )
