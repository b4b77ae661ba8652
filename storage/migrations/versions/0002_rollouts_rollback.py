"""Rollouts: one active rollout per cohort, rollback tracking, bytes fetched per device.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 10:00:00

A migration is frozen text: it imports nothing of fedota, so later model changes never alter it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("rollouts") as batch:
        batch.add_column(sa.Column("active_cohort_id", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("rolled_back_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_foreign_key(
            op.f("fk_rollouts_active_cohort_id_cohorts"), "cohorts", ["active_cohort_id"], ["id"]
        )
        batch.create_unique_constraint(op.f("uq_rollouts_active_cohort_id"), ["active_cohort_id"])
    # Rollouts still running or paused hold their cohort.
    op.execute(
        "UPDATE rollouts SET active_cohort_id = cohort_id WHERE state IN ('running', 'paused')"
    )
    with op.batch_alter_table("device_updates") as batch:
        batch.add_column(
            sa.Column("rollback", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch.add_column(
            sa.Column(
                "bytes_received", sa.BigInteger(), server_default=sa.text("0"), nullable=False
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("device_updates") as batch:
        batch.drop_column("bytes_received")
        batch.drop_column("rollback")
    with op.batch_alter_table("rollouts") as batch:
        batch.drop_constraint(op.f("uq_rollouts_active_cohort_id"), type_="unique")
        batch.drop_constraint(op.f("fk_rollouts_active_cohort_id_cohorts"), type_="foreignkey")
        batch.drop_column("rolled_back_at")
        batch.drop_column("active_cohort_id")
