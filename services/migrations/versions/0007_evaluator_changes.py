"""evaluator checkpoint: a change log per partition in front of the state table

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Updating a row per order per batch cost Postgres ~11 us a row (a new tuple version, two
    # index entries, its WAL), whatever changed in it. A batch now appends one row per partition
    # holding what changed; every so many batches the evaluator folds them into evaluator_state.
    op.create_table(
        "evaluator_changes",
        sa.Column("partition", sa.Integer, primary_key=True),
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("changes", sa.LargeBinary, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    # Written once, read only on a reload: not worth compressing on the hot path.
    op.execute("ALTER TABLE evaluator_changes ALTER COLUMN changes SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.drop_table("evaluator_changes")
