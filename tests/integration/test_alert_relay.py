"""The alert outbox relay behind the evaluator (real PostgreSQL and Kafka): the evaluator
publishes its own alerts once their batch lands, and the relay publishes only the rows it left
unmarked (a crash, a broker away) once they are older than the grace period, oldest first per
order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from deploy.scratch import scratch_database, scratch_topics
from schemas import wire
from services.adapters.database import make_engine, make_sessionmaker, migrate, transaction
from services.adapters.kafka import make_producer
from services.adapters.outbox import OutboxRelay
from services.adapters.settings import Settings
from services.adapters.tables import alert_outbox
from services.breach_evaluator.evaluator import ALERT_RELAY_GRACE_S
from tests.support.alerts import alert
from tests.support.kafka import topic_values

pytestmark = pytest.mark.integration


async def test_the_relay_publishes_only_what_the_evaluator_left_behind(settings: Settings) -> None:
    async with (
        scratch_database(settings.database_url) as url,
        scratch_topics(settings.model_copy(update={"database_url": url})) as scratch,
    ):
        await migrate(url)
        engine = make_engine(scratch)
        producer = make_producer(scratch, client_id="test-alert-relay")
        await producer.start()
        try:
            sessions = make_sessionmaker(engine)
            stranded = [alert("BB-stranded", seq=n, alert_id="A-stranded") for n in range(2)]
            fresh = alert("BB-fresh", alert_id="A-fresh")
            now = datetime.now(UTC)  # the same machine's clock as the database's
            long_ago = now - timedelta(seconds=ALERT_RELAY_GRACE_S + 5)
            async with transaction(sessions) as session:
                await session.execute(alert_outbox.insert(), [
                    {"order_id": a.order_id, "alert_id": a.alert_id, "seq": a.seq,
                     "payload": wire.encode(a), "created_at": created}
                    for a, created in ((stranded[0], long_ago), (fresh, now),
                                       (stranded[1], long_ago))
                ])  # fmt: skip
            relay = OutboxRelay(
                sessions, producer, alert_outbox, key_column="order_id",
                topic=scratch.topic("alerts.v1"), min_age_s=ALERT_RELAY_GRACE_S,
            )  # fmt: skip
            # Only the oldest unpublished row of an order is claimable, so the stranded
            # order takes two claims; the fresh row is the evaluator's to publish.
            assert await relay.publish_once() == 1
            assert await relay.publish_once() == 1
            assert await relay.publish_once() == 0
            async with sessions() as session:
                unpublished = await session.scalars(
                    select(alert_outbox.c.alert_id).where(alert_outbox.c.published_at.is_(None))
                )
                assert list(unpublished) == ["A-fresh"]
        finally:
            await producer.stop()
            await engine.dispose()
        on_wire = [
            wire.decode(wire.Alert, raw)
            for raw in await topic_values(scratch, scratch.topic("alerts.v1"))
        ]
    assert [(a.alert_id, a.seq) for a in on_wire] == [("A-stranded", 0), ("A-stranded", 1)]
