"""Table definitions (SQLAlchemy Core). The schema itself is made by the alembic migrations."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Identity,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

# Where each consumer group stands in each input partition, written in the same transaction as
# the effects of the records before it: this, not Kafka's committed offset, is the truth on
# (re)assignment.
consumer_offsets = Table(
    "consumer_offsets",
    metadata,
    Column("consumer_group", String(128), primary_key=True),
    Column("topic", String(249), primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("next_offset", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# The rules engine's state, one msgspec blob per order, checkpointed per batch. The column order
# is the table's (0010): what a checkpoint rewrites comes after what it leaves, which keeps the
# order's event out of the WAL of every checkpoint.
evaluator_state = Table(
    "evaluator_state",
    metadata,
    Column("order_id", String(64), primary_key=True),
    Column("partition", Integer, nullable=False, index=True),
    Column("order_event", LargeBinary, nullable=False),  # the version the state belongs to
    Column("state", LargeBinary, nullable=False),
    # msgpack {input stream: last source offset evaluated}; see services/breach_evaluator
    Column("delivered", LargeBinary, nullable=False, server_default=text("''::bytea")),
    # msgpack TrackRows of a quiet order (services/core/batch.py); empty: tracks in `state`
    Column("tracks", LargeBinary, nullable=False, server_default=text("''::bytea")),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# What each batch changed in evaluator_state, per partition, not yet folded into it (0007):
# msgpack [[order_id, state | nil, delivered, tracks], ...]; order versions go to evaluator_state.
evaluator_changes = Table(
    "evaluator_changes",
    metadata,
    Column("partition", Integer, primary_key=True),
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("changes", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Alerts decided but not yet on bw.alerts.v1 (transactional outbox).
alert_outbox = Table(
    "alert_outbox",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("order_id", String(64), nullable=False),
    Column("alert_id", String(64), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("published_at", DateTime(timezone=True), nullable=True),
)

# The current version of every order, with the columns its scoping and lookups filter on.
orders = Table(
    "orders",
    metadata,
    Column("order_id", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("region", String(64), nullable=False),
    Column("probation_officer_id", String(64), nullable=False),
    Column("subject_person_id", String(64), nullable=False),
    Column("risk_level", String(8), nullable=False),
    Column("valid_from", DateTime(timezone=True), nullable=False),
    Column("valid_until", DateTime(timezone=True), nullable=True),
    Column("body", JSONB, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Every version ever accepted: the evidence of what was in force when.
order_versions = Table(
    "order_versions",
    metadata,
    Column("order_id", String(64), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("event_id", String(64), nullable=False),
    Column("event_type", String(32), nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("body", JSONB, nullable=False),
    Column("source", String(16), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Every event id answered, with the answer, so a replay gets the same answer.
order_events = Table(
    "order_events",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("content_hash", String(64), nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("response", JSONB, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

order_people = Table(
    "order_people",
    metadata,
    Column("order_id", String(64), primary_key=True),
    Column("person_id", String(64), primary_key=True),
    Column("role", String(16), primary_key=True),
)

order_zones = Table(
    "order_zones",
    metadata,
    Column("order_id", String(64), primary_key=True),
    Column("zone_id", String(64), primary_key=True),
    Column("min_lat", Float, nullable=False),
    Column("min_lon", Float, nullable=False),
    Column("max_lat", Float, nullable=False),
    Column("max_lon", Float, nullable=False),
)

# Order events accepted but not yet on bw.protection-orders.v1 (transactional outbox).
order_outbox = Table(
    "order_outbox",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("key", String(64), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("published_at", DateTime(timezone=True), nullable=True),
)

# Append-only (a trigger refuses UPDATE, DELETE and TRUNCATE) and hash-chained.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("role", String(32), nullable=False),
    Column("region", String(64), nullable=True),
    Column("action", String(64), nullable=False),
    Column("object", String(256), nullable=False),
    Column("reason", Text, nullable=False),
    Column("emergency", Boolean, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

# ---------------------------------------------------------------- alert dispatcher (0005)

# One row per episode: the wire's latest view merged with how people handled it.
alerts = Table(
    "alerts",
    metadata,
    Column("alert_id", String(64), primary_key=True),
    Column("order_id", String(64), nullable=False),
    Column("rule", String(32), nullable=False),
    Column("zone_id", String(64)),
    Column("protected_person_id", String(64)),
    Column("region", String(64), nullable=False),
    Column("probation_officer_id", String(64), nullable=False),
    Column("risk_level", String(8), nullable=False),
    Column("audience", String(16), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("certainty", String(16), nullable=False),
    Column("episode_status", String(16), nullable=False),
    Column("handling", String(16), nullable=False, server_default="new"),
    Column("last_seq", Integer, nullable=False),
    Column("episode_started_at", DateTime(timezone=True), nullable=False),
    Column("first_detected_at", DateTime(timezone=True), nullable=False),
    Column("last_detected_at", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("breach_since", DateTime(timezone=True)),
    Column("closed_at", DateTime(timezone=True)),
    Column("latest", JSONB, nullable=False),
    Column("assigned_to", String(128)),
    Column("acknowledged_by", String(128)),
    Column("acknowledged_at", DateTime(timezone=True)),
    Column("resolved_by", String(128)),
    Column("resolved_at", DateTime(timezone=True)),
    Column("outcome", String(32)),
    Column("notes", Text),
    Column("escalated_at", DateTime(timezone=True)),
)

# Every message of bw.alerts.v1 once; the primary key is the consumer's idempotency.
alert_messages = Table(
    "alert_messages",
    metadata,
    Column("alert_id", String(64), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("payload", JSONB, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# The live feed (SSE); ids become visible in order (see services/alert_dispatcher/repository).
alert_feed = Table(
    "alert_feed",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("event", String(32), nullable=False),
    Column("alert_id", String(64)),
    Column("region", String(64), nullable=False),
    Column("probation_officer_id", String(64), nullable=False),
    Column("audience", String(16), nullable=False),
    Column("supervisor", Boolean, nullable=False, server_default=text("false")),
    Column("payload", JSONB, nullable=False),
)

alert_actions = Table(
    "alert_actions",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("alert_id", String(64), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("actor", String(128), nullable=False),
    Column("role", String(32), nullable=False),
    Column("action", String(32), nullable=False),
    Column("detail", JSONB, nullable=False),
)

webhooks = Table(
    "webhooks",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("owner_kind", String(16), nullable=False),
    Column("owner", String(200), nullable=False),
    Column("url", Text, nullable=False),
    Column("secret", Text, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("active", Boolean, nullable=False, server_default=text("true")),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("webhook_id", BigInteger, nullable=False),
    Column("idempotency_key", String(200), nullable=False),
    Column("event", String(32), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("status", String(16), nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("delivered_at", DateTime(timezone=True)),
    Column("last_error", Text),
)

referrals = Table(
    "referrals",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("order_id", String(64), nullable=False),
    Column("region", String(64), nullable=False),
    Column("probation_officer_id", String(64), nullable=False),
    Column("opened_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("status", String(16), nullable=False, server_default="open"),
    Column("alert_ids", JSONB, nullable=False),
)

victim_reports = Table(
    "victim_reports",
    metadata,
    Column("report_id", String(64), primary_key=True),
    Column("order_id", String(64), nullable=False),
    Column("region", String(64), nullable=False),
    Column("probation_officer_id", String(64), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("description", Text, nullable=False),
    Column("evidence", JSONB, nullable=False),
    Column("status", String(16), nullable=False),
    Column("status_token_hash", String(64), nullable=False),
    Column("reported_by", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

victim_report_events = Table(
    "victim_report_events",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("report_id", String(64), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("status", String(16), nullable=False),
    Column("explanation", Text, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("role", String(32), nullable=False),
)

dossiers = Table(
    "dossiers",
    metadata,
    Column("alert_id", String(64), primary_key=True),
    Column("built_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("content", JSONB, nullable=False),
    Column("content_hash", String(64), nullable=False),
)
