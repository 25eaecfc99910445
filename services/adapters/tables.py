"""Table definitions (SQLAlchemy Core). The schema itself is made by the alembic migrations."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    func,
)

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
