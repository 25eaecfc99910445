"""alert_dispatcher's loops: `bw.alerts.v1` into Postgres, the escalation timer, and webhook
delivery.

The consumer commits its Kafka offsets only after the batch's transaction: a crash in between
replays the batch, and the store takes each (alert_id, seq) once, so a replay changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

import httpx
from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from sqlalchemy.exc import DBAPIError

from schemas import wire
from services.adapters.database import transaction
from services.adapters.kafka import (
    StallWatch,
    consumer_lag,
    dead_letter,
    make_consumer,
    make_producer,
)
from services.adapters.lifecycle import run_with_restarts, sleep_or_stop
from services.adapters.metrics import Metrics
from services.adapters.settings import Settings
from services.alert_dispatcher import policy
from services.alert_dispatcher import repository as repo
from services.alert_dispatcher.service import DispatchService, Intake

log = logging.getLogger(__name__)
SERVICE = "alert_dispatcher"
Record: TypeAlias = ConsumerRecord[bytes, bytes]


# SQLSTATE classes of a statement refused for what it holds: data (22), integrity (23) and
# syntax or access (42). Anything else (a lost connection, a shutdown, a deadlock) passes.
_CONTENT_CLASSES = ("22", "23", "42")


def refused_for_content(exc: DBAPIError) -> bool:
    """True when Postgres refused the statement itself, so retrying it can never succeed."""
    sqlstate = getattr(exc.orig, "sqlstate", None) or ""
    return not exc.connection_invalidated and sqlstate[:2] in _CONTENT_CLASSES


class AlertDispatcher:
    def __init__(
        self,
        settings: Settings,
        service: DispatchService,
        metrics: Metrics,
        *,
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.service = service
        self.metrics = metrics
        self.ready = asyncio.Event()  # joined bw.alerts.v1
        self.fed = on_commit  # after each commit that added to the feed: wakes the streams
        d = settings.dispatch
        self.retry = policy.RetryPolicy(
            d.webhook_backoff_base_s, d.webhook_backoff_cap_s, d.webhook_retry_for_s
        )

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(
            run_with_restarts(stop, SERVICE, lambda: self._consume(stop),
                              on_failure=lambda _: self.metrics.inc("restarts_total")),
            run_with_restarts(stop, "escalation timer", lambda: self._escalate(stop)),
            run_with_restarts(stop, "webhook sender", lambda: self._deliver(stop)),
        )  # fmt: skip

    # ------------------------------------------------------------ bw.alerts.v1 -> Postgres

    async def _consume(self, stop: asyncio.Event) -> None:
        settings = self.settings
        consumer = make_consumer(
            settings, settings.topic("alerts.v1"),
            group_id=f"{settings.topic_prefix}alert-dispatcher", client_id="bw-alert-dispatcher",
            max_poll_records=1000,
        )  # fmt: skip
        producer: AIOKafkaProducer = make_producer(settings, client_id="bw-alert-dispatcher-dlq")
        await producer.start()
        await consumer.start()
        self.ready.set()
        next_offsets: dict[TopicPartition, int] = {}
        watch = StallWatch()
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=200)
                if not batch:
                    self.metrics.set("consumer_lag", consumer_lag(consumer, next_offsets))
                    await watch.idle(consumer)
                    continue
                watch.moved()
                decoded: list[tuple[Record, wire.Alert]] = []
                for records in batch.values():
                    for record in records:
                        try:
                            decoded.append((record, wire.decode(wire.Alert, record.value or b"")))
                        except wire.ContractError as exc:
                            await self._dead_letter(producer, record, str(exc))
                started = time.perf_counter()
                try:
                    intake = await self.service.take_in([m for _, m in decoded], datetime.now(UTC))
                except DBAPIError as exc:
                    if not refused_for_content(exc):
                        raise
                    # Something in the batch cannot be stored. Find it rather than retry the
                    # batch for ever: one bad record must not stop every other alert.
                    intake = await self._one_by_one(decoded, producer)
                self.metrics.observe("batch_commit", time.perf_counter() - started)
                self.metrics.inc("alert_messages_total", intake.stored)
                self.metrics.inc("alert_messages_repeated_total", intake.repeated)
                next_offsets.update({tp: rs[-1].offset + 1 for tp, rs in batch.items()})
                await consumer.commit({tp: next_offsets[tp] for tp in batch})
                self.metrics.set("consumer_lag", consumer_lag(consumer, next_offsets))
                if intake.stored:
                    self.fed()
        finally:
            self.ready.clear()
            await consumer.stop()
            await producer.stop()

    async def _one_by_one(
        self, decoded: list[tuple[Record, wire.Alert]], producer: AIOKafkaProducer
    ) -> Intake:
        stored = repeated = 0
        for record, message in decoded:
            try:
                one = await self.service.take_in([message], datetime.now(UTC))
            except DBAPIError as exc:
                if not refused_for_content(exc):
                    raise
                await self._dead_letter(producer, record, f"cannot be stored: {exc.orig!r}"[:500])
                continue
            stored += one.stored
            repeated += one.repeated
        return Intake(stored, repeated)

    async def _dead_letter(self, producer: AIOKafkaProducer, record: Record, reason: str) -> None:
        self.metrics.inc("dead_letters_total")
        await dead_letter(producer, self.settings, record, reason=reason, service=SERVICE)

    # ------------------------------------------------------------ escalation

    async def _escalate(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            escalated = await self.service.escalate_due(datetime.now(UTC))
            if escalated:
                self.metrics.inc("escalations_total", escalated)
                self.fed()
            await sleep_or_stop(stop, 1.0)

    # ------------------------------------------------------------ webhooks

    async def _deliver(self, stop: asyncio.Event) -> None:
        timeout = httpx.Timeout(self.settings.dispatch.webhook_timeout_s)
        # No proxies from the environment and no redirects: a notification goes to the URL
        # that was registered, or nowhere.
        async with httpx.AsyncClient(timeout=timeout, trust_env=False,
                                     follow_redirects=False) as client:  # fmt: skip
            while not stop.is_set():
                sent = await self.deliver_once(client, datetime.now(UTC))
                if not sent:
                    await sleep_or_stop(stop, 0.25)

    async def deliver_once(self, client: httpx.AsyncClient, now: datetime, limit: int = 50) -> int:
        """One round: claim due deliveries, attempt them concurrently, record each outcome.
        Returns how many were attempted."""
        lease = timedelta(seconds=self.settings.dispatch.webhook_timeout_s * 3 + 5)
        async with transaction(self.service.sessions) as session:
            claimed = await repo.claim_due_deliveries(session, now, lease, limit)
        if not claimed:
            return 0
        outcomes = await asyncio.gather(*(self._attempt(client, row) for row in claimed))
        async with transaction(self.service.sessions) as session:
            for row, error in zip(claimed, outcomes, strict=True):
                await repo.finish_delivery(session, row["id"], self._outcome(row, error))
        return len(claimed)

    async def _attempt(self, client: httpx.AsyncClient, row: Any) -> str | None:
        """POST one delivery; None when the receiver took it (2xx), else why not."""
        stamp = int(time.time())
        body: bytes = row["payload"]
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": row["idempotency_key"],
            policy.TIMESTAMP_HEADER: str(stamp),
            policy.SIGNATURE_HEADER: policy.signature(row["secret"], stamp, body),
            "User-Agent": "breachwatch-webhooks/1",
        }
        try:
            answer = await client.post(row["url"], content=body, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}"
        if 200 <= answer.status_code < 300:
            return None
        return f"HTTP {answer.status_code}"

    def _outcome(self, row: Any, error: str | None) -> dict[str, Any]:
        now = datetime.now(UTC)
        attempts = row["attempts"] + 1
        if error is None:
            self.metrics.inc("webhook_delivered_total")
            return {"status": "delivered", "attempts": attempts, "delivered_at": now,
                    "last_error": None}  # fmt: skip
        self.metrics.inc("webhook_failures_total")
        if self.retry.gives_up(row["created_at"], now):
            self.metrics.inc("webhook_dead_total")
            log.warning("webhook delivery %s dead after %d attempts", row["id"], attempts)
            return {"status": "dead", "attempts": attempts, "last_error": error}
        delay = self.retry.next_delay_s(attempts - 1, random.random())
        return {"attempts": attempts, "last_error": error,
                "next_attempt_at": now + timedelta(seconds=delay)}  # fmt: skip
