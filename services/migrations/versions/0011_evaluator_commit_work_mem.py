"""evaluator_commit_batch: room in memory for a catch-up's fold

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# A catch-up's fold rewrites 30-50k orders in one call. Its arrays (~13 MB at 50k) and, in the
# plan that hashes evaluator_state (~28 MB at 100k orders), the hash table did not fit in the
# default 4 MB of work_mem: auto_explain showed both spilling to temporary files (11k blocks
# written and read back for one fold). The setting holds only while the function runs. A later
# CREATE OR REPLACE of the function drops it unless the new definition sets it again
# (tests/integration/test_real_postgres.py fails then).
WORK_MEM = "64MB"


def upgrade() -> None:
    op.execute(f"ALTER FUNCTION evaluator_commit_batch SET work_mem = '{WORK_MEM}'")


def downgrade() -> None:
    op.execute("ALTER FUNCTION evaluator_commit_batch RESET work_mem")
