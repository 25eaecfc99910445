"""evaluator_state: statistics of its keys only, from a small sample

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# Every batch rewrites rows of evaluator_state, so at 5k fixes/s autovacuum analyzes it at each
# visit (once a minute). With the default statistics target that read a sample of 30,000 rows
# and computed statistics of every bytea column, which no query filters or joins on: ~0.8 s of
# a backend, reading ~70 MB, in the middle of live traffic (pipeline bench, 2026-12-06: the
# slowest second of its alerts fell in it). The plans need only what the keys say: order_id is
# unique (its primary key says so too) and partition has as many values as the topics have
# partitions. A target of 10 samples 3,000 rows; 0 computes nothing for a column. ANALYZE of
# 100k rows took 200-260 ms with the defaults, ~10 ms with these (an idle machine).
KEYS = ("order_id", "partition")
OPAQUE = ("order_event", "state", "delivered", "tracks", "updated_at")
KEY_TARGET = 10


def _targets(targets: dict[str, int]) -> None:
    changes = ", ".join(
        f"ALTER COLUMN {column} SET STATISTICS {target}" for column, target in targets.items()
    )
    op.execute(f"ALTER TABLE evaluator_state {changes}")


def upgrade() -> None:
    _targets(dict.fromkeys(KEYS, KEY_TARGET) | dict.fromkeys(OPAQUE, 0))


def downgrade() -> None:
    _targets(dict.fromkeys(KEYS + OPAQUE, -1))  # -1: the server's default_statistics_target
