"""Quotas: per-guild settings, role limits, member resets; charged images on jobs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("n_charged", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("command", sa.String(32), nullable=True))
        batch.add_column(sa.Column("revised_prompt", sa.Text(), nullable=True))
        batch.create_index("ix_jobs_guild_user_queued_at", ["guild_id", "user_id", "queued_at"])
    with op.batch_alter_table("jobs") as batch:
        batch.alter_column("n_charged", server_default=None)

    op.create_table(
        "guild_settings",
        sa.Column("guild_id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("images_per_day", sa.Integer(), nullable=True),
        sa.Column("images_per_month", sa.Integer(), nullable=True),
        sa.Column("spend_per_month_micro", sa.BigInteger(), nullable=True),
        sa.Column("member_images_per_day", sa.Integer(), nullable=True),
        sa.Column("timezone", sa.String(64), nullable=True),
        sa.Column("allowed_channels", sa.Text(), nullable=True),
        sa.Column("lock_version", sa.Integer(), nullable=False),
    )
    op.create_table(
        "role_limits",
        sa.Column("guild_id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("role_id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("images_per_day", sa.Integer(), nullable=True),
        sa.Column("exempt", sa.Boolean(), nullable=False),
    )
    op.create_table(
        "member_resets",
        sa.Column("guild_id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("user_id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("reset_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("member_resets")
    op.drop_table("role_limits")
    op.drop_table("guild_settings")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_guild_user_queued_at")
        batch.drop_column("revised_prompt")
        batch.drop_column("command")
        batch.drop_column("n_charged")
