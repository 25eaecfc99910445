"""The one outbox relay: rows committed in Postgres, published to Kafka, marked published.

Rows are claimed with `FOR UPDATE SKIP LOCKED`, and only the oldest unpublished row of each key
is claimable, so two relays can run side by side without publishing one key's rows out of order
(a later row of a key waits until the earlier one is marked). The evaluator publishes its alerts
itself as soon as they land; its relay only picks up what that left behind (see `min_age_s`).
At least once on the wire: a relay that dies after Kafka's ack but before its commit publishes
those rows again, and consumers deduplicate (order events by event id and version, alerts by
alert id and seq).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from aiokafka import AIOKafkaProducer
from sqlalchemy import Table, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.adapters.database import transaction
from services.adapters.lifecycle import really_cancelled, sleep_or_stop

log = logging.getLogger(__name__)


class OutboxRelay:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        producer: AIOKafkaProducer,
        table: Table,
        *,
        key_column: str,
        topic: str,
        batch_size: int = 500,
        idle_s: float = 0.02,
        min_age_s: float = 0.0,
    ) -> None:
        self._sessions, self._producer, self._table = sessions, producer, table
        self._key, self._topic = table.c[key_column], topic
        self._batch_size, self._idle_s = batch_size, idle_s
        self.published = 0
        earlier = table.alias("earlier")
        # A relay behind a writer that publishes its own rows (the evaluator) is its safety net:
        # it leaves rows alone until they are `min_age_s` old, so the two rarely both send one.
        old_enough = (
            [table.c.created_at <= func.now() - timedelta(seconds=min_age_s)] if min_age_s else []
        )
        self._claim = (
            select(table.c.id, self._key, table.c.payload)
            .where(
                *old_enough,
                table.c.published_at.is_(None),
                ~exists().where(
                    earlier.c[key_column] == self._key,
                    earlier.c.published_at.is_(None),
                    earlier.c.id < table.c.id,
                ),
            )
            .order_by(table.c.id)
            .limit(batch_size)
            .with_for_update(skip_locked=True, of=table)
        )

    async def publish_once(self) -> int:
        """Publish one claim of rows; returns how many."""
        async with transaction(self._sessions) as session:
            rows = (await session.execute(self._claim)).all()
            if not rows:
                return 0
            acks = [
                await self._producer.send(self._topic, key=key.encode(), value=payload)
                for _, key, payload in rows
            ]
            await asyncio.gather(*acks)
            table = self._table
            await session.execute(
                table.update()
                .where(table.c.id.in_([row_id for row_id, _, _ in rows]))
                .values(published_at=func.now())
            )
        self.published += len(rows)
        return len(rows)

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`: publish, idle briefly when there is nothing, back off on failures
        (Postgres or Kafka away) and carry on by itself when they are back."""
        backoff = 0.1
        while not stop.is_set():
            try:
                published = await self.publish_once()
                backoff = 0.1
            except (Exception, asyncio.CancelledError) as exc:
                if isinstance(exc, asyncio.CancelledError) and really_cancelled():
                    raise
                log.warning(
                    "outbox relay for %s: %s; retrying", self._topic, exc.__class__.__name__
                )
                published = 0
                await sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if published < self._batch_size:
                await sleep_or_stop(stop, self._idle_s)
