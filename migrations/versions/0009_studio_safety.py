"""Studio and safety: the creative action a job ran and its options, members' own defaults,
servers' blocked terms, NSFW and spoiler rules, the audit channel's outbox, and spend alerts
already sent.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        # Studio (bot.generation.StudioAction): what a result button asked for, and its knobs.
        batch.add_column(sa.Column("action", sa.String(32), nullable=True))
        batch.add_column(sa.Column("strength", sa.Float(), nullable=True))
        batch.add_column(sa.Column("input_fidelity", sa.String(8), nullable=True))
        # Safety: the provider moderation level the job was sent with ("low" in NSFW channels).
        batch.add_column(sa.Column("moderation", sa.String(8), nullable=True))
    with op.batch_alter_table("guild_settings") as batch:
        batch.add_column(sa.Column("audit_channel_id", sa.BigInteger(), nullable=True))
        batch.add_column(
            sa.Column(
                "nsfw_low_moderation", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
        batch.add_column(
            sa.Column("spoiler_results", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("spoiler_channels", sa.Text(), nullable=True))
        batch.add_column(sa.Column("sd_negative_prompt", sa.Text(), nullable=True))
    op.create_table(
        "blocked_terms",
        sa.Column("guild_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("term", sa.String(200), nullable=False),
        sa.Column("added_by", sa.BigInteger(), nullable=True),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("guild_id", "term", name="pk_blocked_terms"),
    )
    op.create_table(
        "member_settings",
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("backend", sa.String(64), nullable=True),
        sa.Column("model", sa.String(64), nullable=True),
        sa.Column("size", sa.String(16), nullable=True),
        sa.Column("quality", sa.String(16), nullable=True),
        sa.Column("n", sa.Integer(), nullable=True),
        sa.Column("style", sa.String(16), nullable=True),
        sa.Column("negative_prompt", sa.Text(), nullable=True),
        sa.Column("private", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_member_settings"),
    )
    op.create_table(
        "audit_entries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("guild_id", sa.BigInteger(), nullable=False),
        sa.Column("channel_id", sa.BigInteger(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_entries"),
    )
    op.create_index("ix_audit_entries_posted_at", "audit_entries", ["posted_at", "id"])
    op.create_table(
        "alerts_sent",
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_alerts_sent"),
    )


def downgrade() -> None:
    op.drop_table("alerts_sent")
    op.drop_index("ix_audit_entries_posted_at", table_name="audit_entries")
    op.drop_table("audit_entries")
    op.drop_table("member_settings")
    op.drop_table("blocked_terms")
    with op.batch_alter_table("guild_settings") as batch:
        for name in (
            "sd_negative_prompt",
            "spoiler_channels",
            "spoiler_results",
            "nsfw_low_moderation",
            "audit_channel_id",
        ):
            batch.drop_column(name)
    with op.batch_alter_table("jobs") as batch:
        for name in ("moderation", "input_fidelity", "strength", "action"):
            batch.drop_column(name)
