"""The one Kafka adapter: topic catalogue, producers and consumers with safe settings spelled out.

aiokafka's defaults are wrong for this service (auto commit on, acks=1 on old versions, latest
offset reset); every client here states what it needs instead of inheriting them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.partitioner import DefaultPartitioner

from schemas import wire
from services.adapters.settings import Settings

log = logging.getLogger(__name__)
COMMIT_EVERY_S = 1.0  # see PeriodicCommit
FETCH_MAX_WAIT_MS = 100  # see make_consumer
_BY_KEY = DefaultPartitioner()


@dataclass(frozen=True)
class TopicSpec:
    name: str
    config: dict[str, str] = field(default_factory=dict)
    # Topics joined by partition (orders with order signals) must share one partition count.
    joined: bool = True


def topic_catalogue(settings: Settings) -> list[TopicSpec]:
    """Every topic breachwatch uses, with its configuration."""
    week_ms = str(7 * 24 * 3600 * 1000)
    return [
        TopicSpec(
            settings.topic("protection-orders.v1"),
            # Compacted: the latest version of every order is the state the evaluator and the
            # router rebuild from. A revoked order keeps its last record (not a tombstone), so
            # a late fix still finds the revocation.
            {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"},
        ),
        TopicSpec(settings.topic("order-signals.v1"), {"retention.ms": week_ms}),
        TopicSpec(settings.topic("positions.v1"), {"retention.ms": week_ms}),
        TopicSpec(settings.topic("device-events.v1"), {"retention.ms": week_ms}),
        TopicSpec(settings.topic("alerts.v1"), {"retention.ms": str(30 * 24 * 3600 * 1000)}),
        TopicSpec(settings.topic("dlq.v1"), {"retention.ms": str(30 * 24 * 3600 * 1000)}),
        TopicSpec(settings.cjib_orders_topic, {"retention.ms": week_ms}),
    ]


async def create_topics(settings: Settings) -> list[str]:
    """Create every topic that does not exist yet; return the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    created: list[str] = []
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                name=spec.name,
                num_partitions=settings.partitions,
                replication_factor=settings.replication_factor,
                topic_configs=spec.config,
            )
            for spec in topic_catalogue(settings)
            if spec.name not in existing
        ]
        if wanted:
            # Two callers racing to create: the other one won, which is what we wanted.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(wanted)
            created = [topic.name for topic in wanted]
        await _wait_for_topics(admin, [spec.name for spec in topic_catalogue(settings)])
    finally:
        await admin.close()
    return created


async def _wait_for_topics(admin: AIOKafkaAdminClient, names: Sequence[str]) -> None:
    for _ in range(100):
        if set(names) <= set(await admin.list_topics()):
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"topics not visible after creation: {sorted(names)}")


async def partition_counts(
    settings: Settings, topics: Sequence[str] | None = None
) -> dict[str, int]:
    """Partitions of `topics` (default: every topic of the catalogue), from the broker."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        names = list(topics) if topics is not None else [s.name for s in topic_catalogue(settings)]
        described = await admin.describe_topics(names)
        return {topic["topic"]: len(topic["partitions"]) for topic in described}
    finally:
        await admin.close()


def make_producer(settings: Settings, *, client_id: str, linger_ms: int = 0) -> AIOKafkaProducer:
    """No linger by default: the services append a whole batch's records without yielding to
    the event loop, so they share record batches anyway, and a batch that lingered would add
    its wait to every hop of a fix (router, evaluator)."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=client_id,
        acks="all",
        # Idempotence would be right on Apache Kafka but the embedded broker of the demo does
        # not support it; duplicates are absorbed downstream by deterministic ids instead.
        enable_idempotence=False,
        linger_ms=linger_ms,
        max_batch_size=256 * 1024,
        compression_type=None,
        request_timeout_ms=30_000,
        retry_backoff_ms=100,
    )


def partition_of_key(key: bytes, partitions: Sequence[int]) -> int:
    """The partition a producer's `send` puts `key` on among the topic's `partitions` (sorted):
    Kafka's own murmur2, as the Java clients partition. Joined topics rely on it to put an
    order's records on one partition number, and readers on it to find them."""
    return int(_BY_KEY(key, partitions, partitions))


REMEMBERED_KEYS = 1 << 18  # 22.5 MiB when full of 17-byte order ids (tracemalloc); 100k orders fit


class RecordBatches:
    """Records of one topic, keyed, gathered into a Kafka record batch per partition and handed
    to the producer a batch at a time. `AIOKafkaProducer.send` costs tens of microseconds a
    record in Python (a future, an accumulator lookup, a wake-up of the sender each), which
    for the router was most of routing a position. The partition is the one `send` would
    choose for the key (murmur2 over all of the topic's partitions), so a record lands where
    the rest of its key's records are."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, partitions: Sequence[int]) -> None:
        self.producer, self.topic = producer, topic
        self.partitions = sorted(partitions)
        self.open: dict[int, Any] = {}
        self.sent: list[asyncio.Future[Any]] = []
        self.records = 0
        # The partition of each key seen: aiokafka's murmur2 is Python (~3 us a key here), and
        # the router sends each order's signals again and again. Bounded: emptied when full.
        self._partition_of: dict[bytes, int] = {}

    @classmethod
    async def of(cls, producer: AIOKafkaProducer, topic: str) -> RecordBatches:
        """For `topic` as the producer's metadata knows it (fetched if it does not yet)."""
        return cls(producer, topic, await producer.partitions_for(topic))

    async def add(self, key: bytes, value: bytes) -> None:
        partition = self._partition_of.get(key)
        if partition is None:
            if len(self._partition_of) >= REMEMBERED_KEYS:
                self._partition_of.clear()
            partition = self._partition_of[key] = partition_of_key(key, self.partitions)
        batch = self.open.get(partition)
        if batch is None:
            batch = self.open[partition] = self.producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None) is None:  # full
            await self._send(partition)
            batch = self.open[partition] = self.producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                raise ValueError(f"a record of {len(value)} bytes is larger than a batch")
        self.records += 1

    async def _send(self, partition: int) -> None:
        batch = self.open.pop(partition)
        batch.close()
        self.sent.append(await self.producer.send_batch(batch, self.topic, partition=partition))

    async def send_open(self) -> None:
        """Hand every open batch to the producer, without waiting for the broker."""
        for partition in list(self.open):
            await self._send(partition)

    async def flush(self) -> int:
        """Send what is open and wait until the broker has every batch; the records sent since
        the last flush. A batch the broker refused raises here."""
        await self.send_open()
        sent, self.sent = self.sent, []
        await asyncio.gather(*sent)
        records, self.records = self.records, 0
        return records


def make_consumer(
    settings: Settings,
    *topics: str,
    group_id: str | None,
    client_id: str,
    offset_reset: str = "earliest",
    max_poll_records: int = 2000,
    fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS,
) -> AIOKafkaConsumer:
    """A consumer whose fetches the broker holds until a record lands or `fetch_max_wait_ms`
    passes.

    The wait bounds the empty answers, not the latency of a record: aiokafka sends a broker its
    next fetch once the records of the last one have been taken, for every partition at once,
    and the broker answers it as soon as any of them has a record (`fetch_min_bytes=1`). Only a
    partition that joins while a fetch is out (resumed, sought) waits for that fetch's answer.
    A quiet topic costs a request every `fetch_max_wait_ms` on both sides; at 5 ms, the empty
    answers took ~0.2 of a core of this machine's two at 5k fixes/s (router, broker, bench
    reader together)."""
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group_id,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset=offset_reset,
        fetch_max_wait_ms=fetch_max_wait_ms,
        fetch_min_bytes=1,
        max_poll_records=max_poll_records,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        session_timeout_ms=settings.consumer_session_timeout_ms,
        heartbeat_interval_ms=min(1_000, settings.consumer_session_timeout_ms // 3),
        isolation_level="read_uncommitted",
    )


async def dead_letter(
    producer: AIOKafkaProducer,
    settings: Settings,
    record: ConsumerRecord[bytes, bytes],
    *,
    reason: str,
    service: str,
) -> None:
    """Send a refused record to `bw.dlq.v1` with the reason and where it came from, and wait for
    the broker's ack: the caller commits past the record only after this returns."""
    letter = wire.DeadLetter(
        raw_b64=base64.b64encode(record.value or b"").decode(),
        reason=reason,
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        service=service,
        failed_at=datetime.now(UTC),
        key_b64=base64.b64encode(record.key).decode() if record.key is not None else None,
    )
    await producer.send_and_wait(settings.topic("dlq.v1"), wire.encode(letter), key=record.key)


class Watermarks(Protocol):
    """What `consumer_lag` reads of a consumer (an AIOKafkaConsumer): the end offset of a
    partition as its latest fetch answered, None where none has answered yet."""

    def highwater(self, partition: TopicPartition, /) -> int | None: ...


def consumer_lag(consumer: Watermarks, next_offsets: Mapping[TopicPartition, int]) -> int:
    """Records on the broker not yet consumed, over the partitions whose next offset is known,
    from the high watermarks of the latest fetches (no request to the broker)."""
    lag = 0
    for tp, position in next_offsets.items():
        highwater = consumer.highwater(tp)
        if highwater is not None:
            lag += max(0, highwater - position)
    return lag


class ConsumerStalled(RuntimeError):
    """Records wait on the broker but the consumer has not moved: restart its client."""


class StallWatch:
    """Notices a consumer that has stopped fetching while records wait for it.

    aiokafka can lose its connection to a broker that restarted and never make a new one: its
    fetcher logs `NodeNotReadyError` for ever, `getmany` returns nothing, and no exception
    reaches the service (aio-libs/aiokafka#703, #1133; seen here once in a broker-crash test).
    Between empty fetches the service calls `idle()`; every `probe_s` it asks the broker for the
    end offsets of the assigned partitions (a fresh request, which fails loudly when the
    connection is gone) and compares them with the consumer's positions. Behind for longer
    than `after_s` without a record: `ConsumerStalled`, and the service's restart loop builds a
    new client. `moved()` after every non-empty fetch.
    """

    def __init__(self, *, after_s: float = 20.0, probe_s: float = 5.0) -> None:
        self.after_s, self.probe_s = after_s, probe_s
        self._moved = self._probed = asyncio.get_running_loop().time()

    def moved(self) -> None:
        self._moved = asyncio.get_running_loop().time()

    async def idle(self, consumer: AIOKafkaConsumer) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._probed < self.probe_s:
            return
        self._probed = now
        assigned = sorted(consumer.assignment())
        if not assigned:
            self._moved = now  # nothing to read is not a stall
            return
        ends = await asyncio.wait_for(consumer.end_offsets(assigned), timeout=10)
        positions = [await asyncio.wait_for(consumer.position(tp), timeout=10) for tp in assigned]
        if all(ends[tp] <= position for tp, position in zip(assigned, positions, strict=True)):
            self._moved = now  # caught up: quiet, not stalled
        elif now - self._moved > self.after_s:
            raise ConsumerStalled(f"behind on {len(assigned)} partitions, no record for "
                                  f"{now - self._moved:.0f} s")  # fmt: skip


class PeriodicCommit:
    """A consumer group's offsets, committed beside the service's loop at most once every
    `every_s`.

    A commit is a request to the broker: one per batch is up to a hundred a second under
    steady load, for offsets that matter only after a crash. What a crash loses is progress:
    the router routes those records again and the evaluator drops them; for the evaluator the
    commit is informational anyway (its offsets are in Postgres).

    `quiet`: a failed commit is ignored; otherwise it is raised from the next `advance` (or
    `flush`), to restart the service like any failure.
    """

    def __init__(
        self, consumer: AIOKafkaConsumer, *, quiet: bool, every_s: float = COMMIT_EVERY_S
    ) -> None:
        self._consumer, self._quiet, self._every_s = consumer, quiet, every_s
        self._pending: dict[TopicPartition, int] = {}
        self._in_flight: asyncio.Task[None] | None = None
        self._last = -math.inf

    def advance(self, next_offsets: Mapping[TopicPartition, int]) -> None:
        """Note where the consumer stands; commit if the last commit is old and done. Call it
        on every turn of the loop, empty fetches included, so the last offsets of a burst go
        out within `every_s` even if nothing follows."""
        self._pending.update(next_offsets)
        if not self._pending:
            return
        if self._in_flight is not None:
            if not self._in_flight.done():
                return
            self._in_flight.result()
        now = time.monotonic()
        if now - self._last >= self._every_s:
            self._in_flight = asyncio.create_task(self._commit(self._pending))
            self._pending, self._last = {}, now

    async def flush(self) -> None:
        """On a clean stop: wait for the commit in flight, then commit what is pending."""
        if self._in_flight is not None:
            await self._in_flight
            self._in_flight = None
        if self._pending:
            pending, self._pending = self._pending, {}
            await self._commit(pending)

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            await self._consumer.commit(offsets)
        except KafkaError:
            if not self._quiet:
                raise
