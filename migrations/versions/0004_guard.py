"""Guard: durable intake of acknowledged requests, possibly billed jobs, every message of a
result, pruned results, and installation-wide values (the salt of hashed member ids).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "intakes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("interaction_id", sa.BigInteger(), nullable=False),
        sa.Column("application_id", sa.BigInteger(), nullable=True),
        sa.Column("interaction_token", sa.Text(), nullable=True),
        sa.Column("interaction_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("guild_id", sa.BigInteger(), nullable=True),
        sa.Column("channel_id", sa.BigInteger(), nullable=True),
        sa.Column("parent_channel_id", sa.BigInteger(), nullable=True),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("locale", sa.String(16), nullable=True),
        sa.Column("command", sa.String(32), nullable=False),
        sa.Column("request", sa.Text(), nullable=False),
        sa.UniqueConstraint("interaction_id", name="uq_intakes_interaction_id"),
    )
    op.create_table(
        "job_messages",
        sa.Column(
            "job_id",
            sa.Integer(),
            sa.ForeignKey("jobs.id", ondelete="CASCADE", name="fk_job_messages_job_id"),
            primary_key=True,
        ),
        sa.Column("position", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("channel_id", sa.BigInteger(), nullable=True),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Index("ix_job_messages_message_id", "message_id", unique=True),
    )
    op.create_table(
        "installation",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("possibly_billed", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("parent_channel_id", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("pruned_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_jobs_queued_at", ["queued_at"])
        batch.create_index("ix_jobs_finished_at", ["finished_at"])
    with op.batch_alter_table("jobs") as batch:
        batch.alter_column("possibly_billed", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_finished_at")
        batch.drop_index("ix_jobs_queued_at")
        batch.drop_column("pruned_at")
        batch.drop_column("parent_channel_id")
        batch.drop_column("possibly_billed")
    op.drop_table("installation")
    op.drop_table("job_messages")
    op.drop_table("intakes")
