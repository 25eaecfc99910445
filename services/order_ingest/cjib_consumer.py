"""The CJIB topic: the same validation and storage as the HTTP endpoint; what it refuses goes to
the DLQ with the reason, and the consumer moves on. An outage of Postgres is waited out, never
skipped: offsets are committed only past records that are stored or dead-lettered."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer, ConsumerRecord
from sqlalchemy.exc import DBAPIError

from services.adapters.kafka import dead_letter, make_consumer
from services.adapters.lifecycle import run_with_restarts
from services.adapters.settings import Settings
from services.order_ingest.service import OrderService
from services.order_ingest.validation import InvalidOrder

log = logging.getLogger(__name__)
SERVICE = "cjib_consumer"


class CjibConsumer:
    def __init__(self, settings: Settings, service: OrderService, producer: AIOKafkaProducer):
        self._settings, self._service, self._producer = settings, service, producer
        self.stored = 0
        self.dead_lettered = 0

    async def _reason_to_refuse(self, record: ConsumerRecord[bytes, bytes]) -> str | None:
        if record.value is None:
            return "no value (a tombstone is not an order event)"
        if len(record.value) > self._settings.max_body_bytes:
            return f"record of {len(record.value)} bytes; at most {self._settings.max_body_bytes}"
        backoff = 0.1
        while True:
            try:
                answer = await self._service.ingest(record.value, source="kafka")
            except InvalidOrder as exc:
                return f"422 {exc.field}: {exc.reason}"
            except (OSError, DBAPIError) as exc:
                log.warning("cjib consumer: database unavailable (%s); retrying",
                            type(exc).__name__)  # fmt: skip
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if answer.status >= 400:
                return f"{answer.status} {answer.body.get('field')}: {answer.body.get('detail')}"
            return None

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`; after a broker failure it starts over from the committed offsets."""
        await run_with_restarts(stop, SERVICE, lambda: self._run(stop))

    async def _run(self, stop: asyncio.Event) -> None:
        settings = self._settings
        # One group per topic prefix: deployments (and test runs) sharing a broker stay apart.
        consumer = make_consumer(
            settings, settings.cjib_orders_topic, client_id="bw-cjib-in",
            group_id=f"{settings.topic_prefix}order-ingest",
        )  # fmt: skip
        await consumer.start()
        try:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=200, max_records=500)
                for tp, records in batches.items():
                    for record in records:
                        reason = await self._reason_to_refuse(record)
                        if reason is None:
                            self.stored += 1
                            continue
                        await dead_letter(self._producer, self._settings, record, reason=reason,
                                          service="order_ingest")  # fmt: skip
                        self.dead_lettered += 1
                    await consumer.commit({tp: records[-1].offset + 1})
        finally:
            await consumer.stop()
