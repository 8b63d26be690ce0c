"""Backends: which backend made a job, its Stable Diffusion options and seeds, and a server's
chosen backend.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("backend", sa.String(64), nullable=True))
        batch.add_column(sa.Column("negative_prompt", sa.Text(), nullable=True))
        batch.add_column(sa.Column("seed", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("steps", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("guidance", sa.Float(), nullable=True))
        batch.add_column(sa.Column("sampler", sa.String(64), nullable=True))
        batch.add_column(sa.Column("checkpoint", sa.String(255), nullable=True))
    with op.batch_alter_table("job_images") as batch:
        batch.add_column(sa.Column("seed", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("guild_settings") as batch:
        batch.add_column(sa.Column("backend", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("guild_settings") as batch:
        batch.drop_column("backend")
    with op.batch_alter_table("job_images") as batch:
        batch.drop_column("seed")
    with op.batch_alter_table("jobs") as batch:
        for name in ("checkpoint", "sampler", "guidance", "steps", "seed", "negative_prompt"):
            batch.drop_column(name)
        batch.drop_column("backend")
