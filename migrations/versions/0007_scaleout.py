"""Scale-out: the shared queue's columns on jobs (lane, fair round, worker and lease, cancel
and delivery claims), the processes that share one database, and the shared rate limit.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _job_columns() -> tuple[sa.Column[object], ...]:
    """New column objects each time: a Column belongs to the one table it is added to."""
    return (
        sa.Column("lane", sa.String(64), nullable=True),
        sa.Column("fair_round", sa.BigInteger(), nullable=True),
        sa.Column("worker_id", sa.String(64), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("delivery_owner", sa.String(64), nullable=True),
    )


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        for column in _job_columns():
            batch.add_column(column)
        batch.create_index("ix_jobs_lane_status_round", ["lane", "status", "fair_round", "id"])
        batch.create_index("ix_jobs_status_lease", ["status", "lease_until"])
    op.create_table(
        "processes",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("shards", sa.String(64), nullable=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_processes_heartbeat_at", "processes", ["heartbeat_at"])
    op.create_table(
        "rate_lanes",
        sa.Column("lane", sa.String(64), primary_key=True),
        sa.Column("next_free", sa.Float(), nullable=False, server_default="0"),
        sa.Column("paused_until", sa.Float(), nullable=True),
    )
    op.create_table(
        "rate_grants",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("lane", sa.String(64), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("images", sa.Integer(), nullable=False),
        sa.Column("granted_at", sa.Float(), nullable=False),
        sa.Column("answered_at", sa.Float(), nullable=True),
    )
    op.create_index("ix_rate_grants_lane_answered", "rate_grants", ["lane", "answered_at"])


def downgrade() -> None:
    op.drop_index("ix_rate_grants_lane_answered", table_name="rate_grants")
    op.drop_table("rate_grants")
    op.drop_table("rate_lanes")
    op.drop_index("ix_processes_heartbeat_at", table_name="processes")
    op.drop_table("processes")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_status_lease")
        batch.drop_index("ix_jobs_lane_status_round")
        for column in reversed(_job_columns()):
            batch.drop_column(column.name)
