"""evaluator_state: the columns a checkpoint rewrites last, so that its WAL leaves the rest out

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# An update that stays on its page (a HOT update: 0009) logs only the bytes of the new row
# between the longest prefix and the longest suffix it shares with the old one. The columns were
# in the order they were added: order_id, partition, state, updated_at, order_event (~0.8 kB),
# delivered, tracks. updated_at changes on every write, so the order's event was in the WAL of
# every checkpoint of every order: 1.1-1.4 kB a signal at 5k fixes/s, of rows of ~1.4 kB.
# With what never changes between order versions first and updated_at last, a checkpoint logs
# what it changed: the tracks and offsets, and the state when it changed.
REORDERED = ("order_id", "partition", "order_event", "state", "delivered", "tracks", "updated_at")
AS_ADDED = ("order_id", "partition", "state", "updated_at", "order_event", "delivered", "tracks")
DEFINITIONS = {
    "order_id": "varchar(64) NOT NULL",
    "partition": "integer NOT NULL",
    "state": "bytea NOT NULL",
    "order_event": "bytea NOT NULL",
    "delivered": "bytea NOT NULL DEFAULT ''::bytea",
    "tracks": "bytea NOT NULL DEFAULT ''::bytea",
    "updated_at": "timestamp with time zone NOT NULL DEFAULT now()",
}


def _rebuild(columns: tuple[str, ...]) -> None:
    """PostgreSQL cannot move a column, so the table is copied in the new order: a few seconds at
    100k orders. An evaluator's write that waited for the lock fails on the dropped table, and
    the evaluator restarts and reloads its partitions from the new one."""
    listed = ", ".join(columns)
    op.execute("LOCK TABLE evaluator_state IN ACCESS EXCLUSIVE MODE")
    op.execute(
        "CREATE TABLE evaluator_state_rebuilt ("
        + ", ".join(f"{name} {DEFINITIONS[name]}" for name in columns)
        + ") WITH (fillfactor = 50)"
    )
    # the names are this module's constants
    copy = f"INSERT INTO evaluator_state_rebuilt ({listed}) SELECT {listed} FROM evaluator_state"  # noqa: S608
    op.execute(copy)
    op.execute("DROP TABLE evaluator_state")
    op.execute("ALTER TABLE evaluator_state_rebuilt RENAME TO evaluator_state")
    op.execute(
        "ALTER TABLE evaluator_state ADD CONSTRAINT evaluator_state_pkey PRIMARY KEY (order_id)"
    )
    op.execute("CREATE INDEX ix_evaluator_state_partition ON evaluator_state (partition)")
    # The old table's statistics went with it: without these the commit function's plans
    # guess until autovacuum comes round.
    op.execute("ANALYZE evaluator_state")


def upgrade() -> None:
    _rebuild(REORDERED)


def downgrade() -> None:
    _rebuild(AS_ADDED)
