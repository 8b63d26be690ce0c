"""Typed ORM models. The schema itself is owned by the Alembic migrations in migrations/.

A test compares these models with the migrated database so the two can never drift apart.
Money is stored as integer micro-dollars (exact, and portable across SQLite and PostgreSQL);
Discord ids as 64-bit integers.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps that are always timezone-aware UTC, also on SQLite (which drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    pass


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DELIVERED = "delivered"
    INTERRUPTED = "interrupted"


class Job(Base):
    """One request for images and, once finished, its line in the usage ledger."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    guild_id: Mapped[int | None] = mapped_column(BigInteger)
    channel_id: Mapped[int | None] = mapped_column(BigInteger)
    user_id: Mapped[int | None] = mapped_column(BigInteger)
    operation: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(64))
    prompt: Mapped[str] = mapped_column(Text, default="")
    size: Mapped[str | None] = mapped_column(String(16))
    quality: Mapped[str | None] = mapped_column(String(16))
    style: Mapped[str | None] = mapped_column(String(16))
    background: Mapped[str | None] = mapped_column(String(16))
    fit: Mapped[str | None] = mapped_column(String(8))
    locale: Mapped[str | None] = mapped_column(String(16))
    #: The result this job varies or redoes, and which image of it (0-based).
    source_job_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL", name="fk_jobs_source_job_id")
    )
    source_index: Mapped[int | None] = mapped_column(Integer)
    #: The interaction webhook that delivers the result while its token lives (15 minutes).
    application_id: Mapped[int | None] = mapped_column(BigInteger)
    interaction_token: Mapped[str | None] = mapped_column(Text)
    interaction_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attachment_size_limit: Mapped[int | None] = mapped_column(Integer)
    result_channel_id: Mapped[int | None] = mapped_column(BigInteger)
    result_message_id: Mapped[int | None] = mapped_column(BigInteger)
    error_message: Mapped[str | None] = mapped_column(Text)
    #: The prompt the model says it really used (dall-e-3 rewrites prompts).
    revised_prompt: Mapped[str | None] = mapped_column(Text)
    n_requested: Mapped[int] = mapped_column(Integer, default=1)
    n_delivered: Mapped[int] = mapped_column(Integer, default=0)
    #: Images counted against quotas: n requested while queued or running (the reservation),
    #: n delivered once done, 0 when it failed or was cancelled.
    n_charged: Mapped[int] = mapped_column(Integer, default=0)
    #: What started it: imagine, edit, vary, context-menu, button, reaction, redo, remix, retry.
    command: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[JobStatus] = mapped_column(
        Enum(
            JobStatus, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e]
        ),
        default=JobStatus.QUEUED,
    )
    error_code: Mapped[str | None] = mapped_column(String(64))
    input_tokens: Mapped[int | None] = mapped_column(Integer)
    output_tokens: Mapped[int | None] = mapped_column(Integer)
    cost_micro_usd: Mapped[int] = mapped_column(BigInteger, default=0)
    #: The provider may have made (and billed) this job's images although none reached us
    #: (killed or timed out mid-request): its estimate stays in the spend ledger, n_charged is 0.
    possibly_billed: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The parent of the thread the job came from (channel rules hold for threads too).
    parent_channel_id: Mapped[int | None] = mapped_column(BigInteger)
    #: The configured backend that ran it ("default" = ``[provider]``; None: before 0006).
    backend: Mapped[str | None] = mapped_column(String(64))
    #: Stable Diffusion options (None = the backend's default; see bot.providers.SD_FIELDS).
    negative_prompt: Mapped[str | None] = mapped_column(Text)
    #: The seed asked for (None = random); each image's own seed is on its JobImage row.
    seed: Mapped[int | None] = mapped_column(BigInteger)
    steps: Mapped[int | None] = mapped_column(Integer)
    guidance: Mapped[float | None] = mapped_column(Float)
    sampler: Mapped[str | None] = mapped_column(String(64))
    checkpoint: Mapped[str | None] = mapped_column(String(255))
    #: Delivered only to the requester (an ephemeral follow-up, else a DM; 0010).
    private: Mapped[bool] = mapped_column(Boolean, default=False)
    #: When retention removed its stored inputs and outputs (None: still kept).
    pruned_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # --- the shared queue (PostgreSQL, several processes; see bot.jobs.shared) ---------------
    #: The backend whose queue it waits in ("default" = ``[provider]``); set while queued.
    lane: Mapped[str | None] = mapped_column(String(64))
    #: Its turn in its lane's fair order (lower runs first, then the lower id); set while queued.
    fair_round: Mapped[int | None] = mapped_column(BigInteger)
    #: The process running it, and until when that process's claim holds unless renewed.
    worker_id: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: Its requester pressed Cancel on a process other than the one running it.
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The process that took the right to post its result (posted once, by that one).
    delivery_owner: Mapped[str | None] = mapped_column(String(64))
    # --- studio and safety (migration 0009) ------------------------------------------------
    #: The creative action a result button asked for (``bot.generation.StudioAction``), None
    #: for the commands and the older buttons (Vary n, Redo, Remix: see ``command``).
    action: Mapped[str | None] = mapped_column(String(32))
    #: Stable Diffusion denoising strength (img2img), None = the backend's default.
    strength: Mapped[float | None] = mapped_column(Float)
    #: GPT image models' ``input_fidelity`` ("high" / "low"), None = the model's default.
    input_fidelity: Mapped[str | None] = mapped_column(String(8))
    #: GPT image models' ``moderation`` ("low" in a server's age-restricted channels), None =
    #: the provider's default.
    moderation: Mapped[str | None] = mapped_column(String(8))

    __table_args__ = (
        Index("ix_jobs_status_queued_at", "status", "queued_at"),
        Index("ix_jobs_guild_queued_at", "guild_id", "queued_at"),
        Index("ix_jobs_result_message_id", "result_message_id"),
        Index("ix_jobs_guild_user_queued_at", "guild_id", "user_id", "queued_at"),
        Index("ix_jobs_queued_at", "queued_at"),
        Index("ix_jobs_finished_at", "finished_at"),
        Index("ix_jobs_lane_status_round", "lane", "status", "fair_round", "id"),
        Index("ix_jobs_status_lease", "status", "lease_until"),
        #: A guild's and a member's queued jobs, whatever their ledger's length (bot.jobs.claims).
        Index("ix_jobs_status_guild_user", "status", "guild_id", "user_id"),
    )

    images: Mapped[list[JobImage]] = relationship(
        back_populates="job", cascade="all, delete-orphan", passive_deletes=True, lazy="raise"
    )


class ImageRole(enum.StrEnum):
    INPUT = "input"
    MASK = "mask"
    OUTPUT = "output"


class JobImage(Base):
    """An image a job used (input, mask) or made (output), so nothing needs the CDN later."""

    __tablename__ = "job_images"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE", name="fk_job_images_job_id")
    )
    role: Mapped[ImageRole] = mapped_column(
        Enum(ImageRole, native_enum=False, length=8, values_callable=lambda e: [m.value for m in e])
    )
    position: Mapped[int] = mapped_column(Integer)
    mime_type: Mapped[str] = mapped_column(String(32))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    #: The seed the backend made this output with (Stable Diffusion backends).
    seed: Mapped[int | None] = mapped_column(BigInteger)

    job: Mapped[Job] = relationship(back_populates="images")

    __table_args__ = (
        UniqueConstraint("job_id", "role", "position", name="uq_job_images_job_role_position"),
    )


class GuildSettings(Base):
    """A server's own limits (None = the operator's default), time zone and channels.

    Reserving images updates ``lock_version`` first: that takes the row's write lock (SQLite's
    database lock, PostgreSQL's row lock), so concurrent reservations in one guild are checked
    one after the other and a quota is never overdrawn.
    """

    __tablename__ = "guild_settings"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    images_per_day: Mapped[int | None] = mapped_column(Integer)
    images_per_month: Mapped[int | None] = mapped_column(Integer)
    spend_per_month_micro: Mapped[int | None] = mapped_column(BigInteger)
    member_images_per_day: Mapped[int | None] = mapped_column(Integer)
    timezone: Mapped[str | None] = mapped_column(String(64))
    #: Space-separated channel ids where generation is allowed; None or "" = everywhere.
    allowed_channels: Mapped[str | None] = mapped_column(Text)
    #: The backend the server's admins chose among those the operator enabled (None: default).
    backend: Mapped[str | None] = mapped_column(String(64))
    lock_version: Mapped[int] = mapped_column(Integer, default=0)
    #: Where every job's audit entry is posted (``/moderation audit-channel``); None = off.
    audit_channel_id: Mapped[int | None] = mapped_column(BigInteger)
    #: GPT image models run with ``moderation="low"`` in the server's age-restricted channels.
    nsfw_low_moderation: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Results posted as spoilers everywhere in the server, or in these channels
    #: (space-separated ids, like ``allowed_channels``).
    spoiler_results: Mapped[bool] = mapped_column(Boolean, default=False)
    spoiler_channels: Mapped[str | None] = mapped_column(Text)
    #: Appended to the negative prompt of every Stable Diffusion request in the server.
    sd_negative_prompt: Mapped[str | None] = mapped_column(Text)


class RoleLimit(Base):
    """A per-member daily limit for members with a role, or an exemption from it."""

    __tablename__ = "role_limits"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    role_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    images_per_day: Mapped[int | None] = mapped_column(Integer)
    exempt: Mapped[bool] = mapped_column(Boolean, default=False)


class MemberReset(Base):
    """``/quota reset member``: the member's daily count starts again from ``reset_at``."""

    __tablename__ = "member_resets"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    reset_at: Mapped[datetime] = mapped_column(UTCDateTime())


class JobMessage(Base):
    """Every message a result was posted as (a result split over several has several)."""

    __tablename__ = "job_messages"

    job_id: Mapped[int] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE", name="fk_job_messages_job_id"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    channel_id: Mapped[int | None] = mapped_column(BigInteger)
    message_id: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_job_messages_message_id", "message_id", unique=True),)


class Intake(Base):
    """An acknowledged interaction that is not a job yet: written before the bot defers.

    A process killed between "thinking…" and the job row leaves this row behind, and the next
    start finishes it (queues it, or tells the member), so no acknowledged request is lost.
    ``request`` is JSON: the order's options, the upload URLs and the member's role ids.
    """

    __tablename__ = "intakes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    interaction_id: Mapped[int] = mapped_column(BigInteger)
    application_id: Mapped[int | None] = mapped_column(BigInteger)
    interaction_token: Mapped[str | None] = mapped_column(Text)
    interaction_at: Mapped[datetime] = mapped_column(UTCDateTime())
    guild_id: Mapped[int | None] = mapped_column(BigInteger)
    channel_id: Mapped[int | None] = mapped_column(BigInteger)
    parent_channel_id: Mapped[int | None] = mapped_column(BigInteger)
    user_id: Mapped[int] = mapped_column(BigInteger)
    locale: Mapped[str | None] = mapped_column(String(16))
    command: Mapped[str] = mapped_column(String(32))
    request: Mapped[str] = mapped_column(Text)

    __table_args__ = (UniqueConstraint("interaction_id", name="uq_intakes_interaction_id"),)


class Installation(Base):
    """Values that belong to this installation and must survive restarts (e.g. the salt)."""

    __tablename__ = "installation"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class UsageCounter(Base):
    """What the quotas count for one scope and period, kept in step with the ledger.

    Summing a month of job rows under the write lock grew with the ledger (90 ms at 100,000
    rows); these rows answer the same questions in one read. ``scope`` is ``guild`` (the
    guild's day and month), ``member`` (a member's day in a guild) or ``total`` (the
    operator's UTC day and month over every guild and DM); ``period`` is the local date
    (``2026-12-01``) or month (``2026-12``) in the guild's time zone (UTC for ``total``).
    Direct messages count as guild 0, and ids a scope does not have are 0. Only
    :mod:`bot.quotas.counters` writes them.
    """

    __tablename__ = "usage_counters"

    scope: Mapped[str] = mapped_column(String(8), primary_key=True)
    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    period: Mapped[str] = mapped_column(String(10), primary_key=True)
    #: Images and micro-dollars charged: reservations while jobs wait or run, then the result.
    images: Mapped[int] = mapped_column(BigInteger, default=0)
    spend_micro: Mapped[int] = mapped_column(BigInteger, default=0)


class Process(Base):
    """A bot process sharing the database (gateway shards, workers): alive while its
    heartbeat is recent. Each process writes only its own row."""

    __tablename__ = "processes"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: ``gateway`` (shards, no jobs), ``worker`` (jobs, no gateway) or ``both``.
    role: Mapped[str] = mapped_column(String(16))
    #: The gateway shards it runs ("0,1"), None for a worker.
    shards: Mapped[str | None] = mapped_column(String(64))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (Index("ix_processes_heartbeat_at", "heartbeat_at"),)


class RateLane(Base):
    """One backend's shared rate limit (every process's requests together): the GCRA state
    and a pause a provider's 429 ``retry-after`` set. Times are epoch seconds of the
    database's clock, so processes on machines with different clocks agree."""

    __tablename__ = "rate_lanes"

    lane: Mapped[str] = mapped_column(String(64), primary_key=True)
    next_free: Mapped[float] = mapped_column(Float, default=0.0)
    paused_until: Mapped[float | None] = mapped_column(Float)


class RateGrant(Base):
    """Images one request may send on a lane: counted while in flight (``answered_at`` None)
    and for the provider's minute after it was answered."""

    __tablename__ = "rate_grants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lane: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[int | None] = mapped_column(Integer)
    images: Mapped[int] = mapped_column(Integer)
    granted_at: Mapped[float] = mapped_column(Float)
    answered_at: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (Index("ix_rate_grants_lane_answered", "lane", "answered_at"),)


class BlockedTerm(Base):
    """A term (``*`` wildcards allowed) a server's admins refuse in prompts; the operator's
    ``[moderation] blocked_terms`` apply everywhere besides (they are not rows)."""

    __tablename__ = "blocked_terms"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    term: Mapped[str] = mapped_column(String(200), primary_key=True)
    added_by: Mapped[int | None] = mapped_column(BigInteger)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class MemberSettings(Base):
    """A member's own defaults (``/settings``), used by every command and action; a server's
    rules and the operator's ceilings still win. None = no preference."""

    __tablename__ = "member_settings"

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    backend: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(64))
    size: Mapped[str | None] = mapped_column(String(16))
    quality: Mapped[str | None] = mapped_column(String(16))
    n: Mapped[int | None] = mapped_column(Integer)
    style: Mapped[str | None] = mapped_column(String(16))
    negative_prompt: Mapped[str | None] = mapped_column(Text)
    #: Results only the member sees (ephemeral follow-ups).
    private: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AuditEntry(Base):
    """An entry for a server's audit channel, waiting to be posted (the outbox): written with
    the job's outcome or the refusal, posted by a background task that never holds up a job.
    ``kind`` is ``job`` or ``refusal``; ``body`` is JSON (what the entry shows)."""

    __tablename__ = "audit_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    guild_id: Mapped[int] = mapped_column(BigInteger)
    channel_id: Mapped[int] = mapped_column(BigInteger)
    job_id: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    posted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_audit_entries_posted_at", "posted_at", "id"),)


class AlertSent(Base):
    """A spend alert already sent, so each is sent once per period: ``key`` names it, e.g.
    ``total:2026-12:80`` or ``guild:1234:2026-12:100``."""

    __tablename__ = "alerts_sent"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
