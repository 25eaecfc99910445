"""evaluator_state: half of each page left free, so that folds are HOT updates

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A fold rewrites the row of every order it names (~1.4 kB each), and a catch-up folds each
    # order two or three times. With full pages no new version fit beside the old one: of
    # 275k updates in a 1M-signal catch-up, 1.3k were HOT, which left 275k dead rows and two
    # index entries each for autovacuum to clean (520 MB for 100k orders) while live traffic
    # came in. With room on the page, an update stays on it (indexed columns never change) and
    # the page prunes its own dead versions. Pages written before this keep their fill.
    op.execute("ALTER TABLE evaluator_state SET (fillfactor = 50)")


def downgrade() -> None:
    op.execute("ALTER TABLE evaluator_state RESET (fillfactor)")
