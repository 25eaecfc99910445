"""Table definitions (SQLAlchemy Core). The schema itself is made by the alembic migrations."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
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

# The rules engine's state, one msgspec blob per order, checkpointed per batch.
evaluator_state = Table(
    "evaluator_state",
    metadata,
    Column("order_id", String(64), primary_key=True),
    Column("partition", Integer, nullable=False, index=True),
    Column("state", LargeBinary, nullable=False),
    Column("order_event", LargeBinary, nullable=False),  # the version the state belongs to
    # msgpack {input stream: last source offset evaluated}; see services/breach_evaluator
    Column("delivered", LargeBinary, nullable=False, server_default=text("''::bytea")),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
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
