"""orders, their versions, received event ids, order outbox, append-only hash-chained audit

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _now() -> sa.TextClause:
    return sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("order_id", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),  # active | revoked
        sa.Column("region", sa.String(64), nullable=False),
        sa.Column("probation_officer_id", sa.String(64), nullable=False),
        sa.Column("subject_person_id", sa.String(64), nullable=False),
        sa.Column("risk_level", sa.String(8), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("body", postgresql.JSONB, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
    )
    op.create_index("ix_orders_region", "orders", ["region"])
    op.create_index("ix_orders_probation_officer", "orders", ["probation_officer_id"])
    op.create_table(
        "order_versions",
        sa.Column("order_id", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(32), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("body", postgresql.JSONB, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),  # http | kafka
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
    )
    op.create_table(
        "order_events",
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer, nullable=False),
        sa.Column("response", postgresql.JSONB, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
    )
    # Who an order concerns, for the lookup by person (protected persons and the subject).
    op.create_table(
        "order_people",
        sa.Column("order_id", sa.String(64), primary_key=True),
        sa.Column("person_id", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(16), primary_key=True),  # protected | subject
    )
    op.create_index("ix_order_people_person", "order_people", ["person_id"])
    # Zone bounding boxes, for the lookup by location: SQL narrows, geo decides.
    op.create_table(
        "order_zones",
        sa.Column("order_id", sa.String(64), primary_key=True),
        sa.Column("zone_id", sa.String(64), primary_key=True),
        sa.Column("min_lat", sa.Float, nullable=False),
        sa.Column("min_lon", sa.Float, nullable=False),
        sa.Column("max_lat", sa.Float, nullable=False),
        sa.Column("max_lon", sa.Float, nullable=False),
    )
    op.create_index("ix_order_zones_box", "order_zones", ["min_lat", "max_lat"])
    op.create_table(
        "order_outbox",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "ix_order_outbox_unpublished", "order_outbox", ["key", "id"],
        postgresql_where=sa.text("published_at IS NULL"),
    )  # fmt: skip
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("region", sa.String(64), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("object", sa.String(256), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("emergency", sa.Boolean, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    # One statement per execute: asyncpg prepares each.
    op.execute(
        """
        CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
    )
    op.execute(
        "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
    )


def downgrade() -> None:
    op.execute("DROP TABLE audit_log")
    op.execute("DROP FUNCTION audit_log_append_only()")
    for table in ("order_outbox", "order_zones", "order_people", "order_events"):
        op.drop_table(table)
    op.drop_table("order_versions")
    op.drop_table("orders")
