"""Where a job came from and where its result went, plus the images it used and made.

Buttons and reactions on a result must keep working after a restart, so everything they need
(the settings of the job, its inputs, the result message) lives in the database.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("style", sa.String(16), nullable=True))
        batch.add_column(sa.Column("background", sa.String(16), nullable=True))
        batch.add_column(sa.Column("fit", sa.String(8), nullable=True))
        batch.add_column(sa.Column("locale", sa.String(16), nullable=True))
        batch.add_column(sa.Column("source_job_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("source_index", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("application_id", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("interaction_token", sa.Text(), nullable=True))
        batch.add_column(sa.Column("interaction_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("attachment_size_limit", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("result_channel_id", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("result_message_id", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("error_message", sa.Text(), nullable=True))
        batch.create_foreign_key(
            "fk_jobs_source_job_id", "jobs", ["source_job_id"], ["id"], ondelete="SET NULL"
        )
        batch.create_index("ix_jobs_result_message_id", ["result_message_id"])

    op.create_table(
        "job_images",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "job_id",
            sa.Integer(),
            sa.ForeignKey("jobs.id", ondelete="CASCADE", name="fk_job_images_job_id"),
            nullable=False,
        ),
        sa.Column("role", sa.String(8), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("mime_type", sa.String(32), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.UniqueConstraint("job_id", "role", "position", name="uq_job_images_job_role_position"),
    )


def downgrade() -> None:
    op.drop_table("job_images")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_result_message_id")
        batch.drop_constraint("fk_jobs_source_job_id", type_="foreignkey")
        for column in (
            "error_message",
            "result_message_id",
            "result_channel_id",
            "attachment_size_limit",
            "interaction_at",
            "interaction_token",
            "application_id",
            "source_index",
            "source_job_id",
            "locale",
            "fit",
            "background",
            "style",
        ):
            batch.drop_column(column)
