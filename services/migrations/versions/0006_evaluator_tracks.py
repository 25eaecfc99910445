"""evaluator checkpoint: the tracks of quiet orders beside their state

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Most checkpoints only move device tracks (quiet fixes). They are stored as rows of the
    # evaluator's columns, and the state is rewritten only when its objects change. Empty: the
    # tracks are in the state (a hot order, or a checkpoint from before this revision).
    op.add_column(
        "evaluator_state",
        sa.Column("tracks", sa.LargeBinary, nullable=False, server_default=sa.text("''::bytea")),
    )


def downgrade() -> None:
    op.drop_column("evaluator_state", "tracks")
