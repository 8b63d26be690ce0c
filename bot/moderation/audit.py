"""The audit channel's outbox: an entry per job and per refusal, written where it happens and
posted later by a background task, so an entry never delays or fails a member's job.

Only this module writes ``audit_entries`` (the poster in the Discord layer claims entries and
marks them posted through :func:`claim_entry`) and ``guild_settings.audit_channel_id``.
Nothing is written for a server without an audit channel.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, insert, literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from bot.db import Sessions
from bot.db.guilds import lock_guild
from bot.db.models import AuditEntry, GuildSettings, Job, UTCDateTime, utcnow

log = logging.getLogger(__name__)

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


async def set_audit_channel(sessions: Sessions, guild_id: int, channel_id: int | None) -> None:
    """The one writer of ``guild_settings.audit_channel_id`` (None turns the channel off),
    under the guild's lock like every change of a server's rules."""
    async with sessions() as session, session.begin():
        row = await lock_guild(session, guild_id)
        row.audit_channel_id = channel_id


def job_body(job: Job) -> dict[str, Any]:
    """What a job's entry shows: who asked for what, what it cost, how it ended, and where its
    result is (the poster links to it and takes its first image as the thumbnail)."""
    return {
        "job_id": job.id,
        "user_id": job.user_id,
        "command": job.command or job.operation,
        "prompt": (job.prompt or "")[:PROMPT_LIMIT],
        "cost_micro_usd": job.cost_micro_usd,
        "outcome": str(job.status),
        "error": job.error_code,
        "result_channel_id": job.result_channel_id,
        "result_message_id": job.result_message_id,
        "n_images": job.n_delivered,
        # Shown only to its requester: the entry says so, since no link can open it.
        "private": bool(job.private),
    }


#: Error codes of jobs refused by the content check, whose refusal entry is written already.
REFUSED_WITH_ENTRY = frozenset({"moderation.precheck_flagged"})


async def audit_job_end(session: AsyncSession, job: Job) -> None:
    """:func:`audit_job_end_sync` in an async session."""
    await session.run_sync(audit_job_end_sync, job)


def audit_job_end_sync(session: Session, job: Job) -> None:
    """Queue ``job``'s entry in the caller's transaction, as the job's end is recorded
    (delivered, failed, cancelled, interrupted); nothing for a server without an audit channel.

    One statement, an insert from the server's settings row, which writes nothing where
    there is no audit channel (no savepoint: the hot path's completion stays one round of
    statements; an entry that cannot even be built is logged and the job recorded all the
    same). A job the content check refused has its refusal entry already (:func:`audit_refusal`)."""
    if job.guild_id is None or job.error_code in REFUSED_WITH_ENTRY:
        return
    try:
        body = json.dumps(job_body(job), ensure_ascii=False)
    except (TypeError, ValueError):
        log.exception("job %d: its audit entry could not be built; the job is recorded", job.id)
        return
    values = {"ended_job": job.id, "ended_guild": job.guild_id, "body": body, "at": utcnow()}
    session.connection().execute(_AUDIT_JOB_END, values)


#: Built once (building the insert-from-select cost more than running it).
_AUDIT_JOB_END = insert(AuditEntry.metadata.tables[AuditEntry.__tablename__]).from_select(
    ["guild_id", "channel_id", "job_id", "kind", "body", "created_at", "attempts"],
    select(
        GuildSettings.guild_id,
        GuildSettings.audit_channel_id,
        bindparam("ended_job", type_=AuditEntry.job_id.type),
        literal("job"),
        bindparam("body", type_=AuditEntry.body.type),
        bindparam("at", type_=UTCDateTime()),
        literal(0),
    ).where(
        GuildSettings.guild_id == bindparam("ended_guild"),
        GuildSettings.audit_channel_id.is_not(None),
    ),
)


# --- the poster's side: claim an entry, then mark it posted or failed -------------------------

#: Tries before an entry is given up (logged); missing channels and permissions give up at once.
MAX_ATTEMPTS = 5


@dataclass
class Claim:
    """An entry taken for posting. On PostgreSQL its row stays locked (``SKIP LOCKED``) until
    the claim ends, so of several processes exactly one posts it."""

    entry: AuditEntry

    @property
    def body(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.entry.body)
        return loaded

    def posted(self) -> None:
        self.entry.posted_at = utcnow()

    def failed(self, *, final: bool = False) -> int:
        """One more failed try (every try used up when ``final``); the attempts made."""
        self.entry.attempts = MAX_ATTEMPTS if final else self.entry.attempts + 1
        return self.entry.attempts


@asynccontextmanager
async def claim_entry(
    sessions: Sessions, waiting: Collection[int] = ()
) -> AsyncIterator[Claim | None]:
    """The oldest entry still to post (not one of ``waiting``, the entries backing off), held
    while the caller posts it; what the caller marks is committed when the block ends."""
    query = (
        select(AuditEntry)
        .where(AuditEntry.posted_at.is_(None), AuditEntry.attempts < MAX_ATTEMPTS)
        .order_by(AuditEntry.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if waiting:
        query = query.where(AuditEntry.id.not_in(list(waiting)))
    async with sessions() as session, session.begin():
        entry = await session.scalar(query)
        yield None if entry is None else Claim(entry)
