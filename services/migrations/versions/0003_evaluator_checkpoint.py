"""evaluator checkpoint: the order event each state belongs to; the alert relay's per-key index

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The state is only meaningful with the order version it was computed for; keeping the two
    # together means a restarted evaluator needs no replay of the (compacted) orders topic.
    op.add_column("evaluator_state", sa.Column("order_event", sa.LargeBinary, nullable=True))
    op.execute("UPDATE evaluator_state SET order_event = ''::bytea")
    op.alter_column("evaluator_state", "order_event", nullable=False)
    # The relay claims the oldest unpublished alert of each order (see services/adapters/outbox).
    op.create_index(
        "ix_alert_outbox_unpublished_order", "alert_outbox", ["order_id", "id"],
        postgresql_where=sa.text("published_at IS NULL"),
    )  # fmt: skip


def downgrade() -> None:
    op.drop_index("ix_alert_outbox_unpublished_order", table_name="alert_outbox")
    op.drop_column("evaluator_state", "order_event")
