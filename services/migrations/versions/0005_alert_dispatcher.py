"""alert dispatcher: alerts and their messages, the live feed, actions, webhooks and deliveries,
victim-support referrals, victim reports, frozen dossiers

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    # One row per episode (alert_id): the wire's view merged with how people handled it.
    op.create_table(
        "alerts",
        sa.Column("alert_id", sa.String(64), primary_key=True),
        sa.Column("order_id", sa.String(64), nullable=False, index=True),
        sa.Column("rule", sa.String(32), nullable=False),
        sa.Column("zone_id", sa.String(64)),
        sa.Column("protected_person_id", sa.String(64)),
        sa.Column("region", sa.String(64), nullable=False),
        sa.Column("probation_officer_id", sa.String(64), nullable=False, index=True),
        sa.Column("risk_level", sa.String(8), nullable=False),
        sa.Column("audience", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("certainty", sa.String(16), nullable=False),
        sa.Column("episode_status", sa.String(16), nullable=False),
        sa.Column("handling", sa.String(16), nullable=False, server_default="new"),
        sa.Column("last_seq", sa.Integer, nullable=False),
        sa.Column("episode_started_at", TZ, nullable=False),
        sa.Column("first_detected_at", TZ, nullable=False),
        sa.Column("last_detected_at", TZ, nullable=False),
        sa.Column("received_at", TZ, nullable=False),
        sa.Column("breach_since", TZ),  # received as breach or worse: escalation runs from here
        sa.Column("closed_at", TZ),
        sa.Column("latest", JSONB, nullable=False),
        sa.Column("assigned_to", sa.String(128)),
        sa.Column("acknowledged_by", sa.String(128)),
        sa.Column("acknowledged_at", TZ),
        sa.Column("resolved_by", sa.String(128)),
        sa.Column("resolved_at", TZ),
        sa.Column("outcome", sa.String(32)),
        sa.Column("notes", sa.Text),
        sa.Column("escalated_at", TZ),
    )
    op.create_index("ix_alerts_region_received", "alerts", ["region", "received_at"])
    # The escalation timer's scan: unacknowledged breaches not yet escalated.
    op.create_index(
        "ix_alerts_escalation_due", "alerts", ["breach_since"],
        postgresql_where=sa.text("handling = 'new' AND escalated_at IS NULL "
                                 "AND breach_since IS NOT NULL"),
    )  # fmt: skip
    # Every message of bw.alerts.v1 once: the primary key is the consumer's idempotency.
    op.create_table(
        "alert_messages",
        sa.Column("alert_id", sa.String(64), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("payload", JSONB, nullable=False),
        sa.Column("received_at", TZ, nullable=False, server_default=sa.func.now()),
    )
    # The live feed. Ids are taken under an advisory lock held to commit, so they become
    # visible in id order and a reader resuming after Last-Event-ID N never skips a row.
    op.create_table(
        "alert_feed",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("at", TZ, nullable=False, server_default=sa.func.now()),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("alert_id", sa.String(64)),
        sa.Column("region", sa.String(64), nullable=False),
        sa.Column("probation_officer_id", sa.String(64), nullable=False),
        sa.Column("audience", sa.String(16), nullable=False),
        sa.Column("supervisor", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("payload", JSONB, nullable=False),
    )
    op.create_index("ix_alert_feed_region_id", "alert_feed", ["region", "id"])
    op.create_table(
        "alert_actions",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("alert_id", sa.String(64), nullable=False, index=True),
        sa.Column("at", TZ, nullable=False, server_default=sa.func.now()),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("detail", JSONB, nullable=False),
    )
    op.create_table(
        "webhooks",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("owner_kind", sa.String(16), nullable=False),  # officer | organisation
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", TZ, nullable=False, server_default=sa.func.now()),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    )
    op.create_index("ix_webhooks_owner", "webhooks", ["owner_kind", "owner"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("webhook_id", sa.BigInteger, sa.ForeignKey("webhooks.id"), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", TZ, nullable=False, server_default=sa.func.now()),
        sa.Column("created_at", TZ, nullable=False, server_default=sa.func.now()),
        sa.Column("delivered_at", TZ),
        sa.Column("last_error", sa.Text),
        sa.UniqueConstraint("webhook_id", "idempotency_key", name="uq_delivery_once"),
    )
    op.create_index(
        "ix_webhook_deliveries_due", "webhook_deliveries", ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )  # fmt: skip
    op.create_table(
        "referrals",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("region", sa.String(64), nullable=False),
        sa.Column("probation_officer_id", sa.String(64), nullable=False),
        sa.Column("opened_at", TZ, nullable=False, server_default=sa.func.now()),
        sa.Column("status", sa.String(16), nullable=False, server_default="open"),
        sa.Column("alert_ids", JSONB, nullable=False),
    )
    op.create_index(
        "uq_referrals_open_order", "referrals", ["order_id"], unique=True,
        postgresql_where=sa.text("status = 'open'"),
    )  # fmt: skip
    op.create_table(
        "victim_reports",
        sa.Column("report_id", sa.String(64), primary_key=True),
        sa.Column("order_id", sa.String(64), nullable=False, index=True),
        sa.Column("region", sa.String(64), nullable=False),
        sa.Column("probation_officer_id", sa.String(64), nullable=False),
        sa.Column("occurred_at", TZ, nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("evidence", JSONB, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("reported_by", sa.String(128), nullable=False),
        sa.Column("created_at", TZ, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", TZ, nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "victim_report_events",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("report_id", sa.String(64), nullable=False, index=True),
        sa.Column("at", TZ, nullable=False, server_default=sa.func.now()),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("explanation", sa.Text, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
    )
    # A dossier is frozen once its episode has closed: the evidence outlives Kafka's retention
    # and every later read gets the same content and hash.
    op.create_table(
        "dossiers",
        sa.Column("alert_id", sa.String(64), primary_key=True),
        sa.Column("built_at", TZ, nullable=False, server_default=sa.func.now()),
        sa.Column("content", JSONB, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "dossiers", "victim_report_events", "victim_reports", "referrals",
        "webhook_deliveries", "webhooks", "alert_actions", "alert_feed", "alert_messages",
        "alerts",
    ):  # fmt: skip
        op.drop_table(table)
