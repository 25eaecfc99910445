"""evaluator checkpoint: the last source offset delivered per input partition, per order

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # fix_router is at least once: after a crash it routes some records again. The evaluator
    # drops a signal whose source offset it has already evaluated, and must remember that
    # across restarts in the same transaction as the state it produced.
    op.add_column(
        "evaluator_state",
        sa.Column("delivered", sa.LargeBinary, nullable=False, server_default=sa.text("''::bytea")),
    )


def downgrade() -> None:
    op.drop_column("evaluator_state", "delivered")
