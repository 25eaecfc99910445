"""The real broker: keyed produce, group consume with manual commit, resume without loss or
duplicates after a restart of the consumer."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from deploy.scratch import scratch_topics
from schemas import wire
from services.adapters import kafka
from services.adapters.kafka import (
    ConsumerStalled,
    PeriodicCommit,
    RecordBatches,
    StallWatch,
    make_consumer,
    make_producer,
    partition_counts,
)
from services.adapters.settings import Settings

pytestmark = pytest.mark.integration


def _position(device: str, n: int) -> bytes:
    ts = datetime(2026, 11, 23, 10, 0, tzinfo=UTC) + timedelta(seconds=n)
    return wire.encode(
        wire.Position(device_id=device, ts=ts, lat=52.0 + n * 1e-5, lon=5.1, accuracy_m=5.0)
    )


async def _consume(settings: Settings, group: str, limit: int) -> list[tuple[str, int]]:
    """Process up to `limit` records, committing by hand exactly the offsets processed."""
    consumer = make_consumer(
        settings, settings.topic("positions.v1"), group_id=group, client_id="test"
    )
    await consumer.start()
    seen: list[tuple[str, int]] = []
    try:
        while len(seen) < limit:
            batches = await asyncio.wait_for(consumer.getmany(timeout_ms=500), timeout=30)
            processed: dict[TopicPartition, int] = {}
            for tp, records in batches.items():
                for record in records:
                    if len(seen) == limit:
                        break
                    fix = wire.decode(wire.Position, record.value)
                    assert record.key == fix.device_id.encode()
                    seen.append((fix.device_id, round((fix.lat - 52.0) * 1e5)))
                    processed[tp] = record.offset + 1
            if processed:
                await consumer.commit(processed)
    finally:
        await consumer.stop()
    return seen


async def test_consumer_resumes_at_committed_offset_without_loss_or_duplicates(
    topics: Settings,
) -> None:
    async with scratch_topics(topics) as own:  # alone on its topic: other tests produce fixes too
        await _resume_without_loss_or_duplicates(own)


async def _resume_without_loss_or_duplicates(topics: Settings) -> None:
    devices = [f"EB-{n}" for n in range(5)]
    producer = make_producer(topics, client_id="test")
    await producer.start()
    try:
        sends = [
            await producer.send(
                topics.topic("positions.v1"), _position(device, n), key=device.encode()
            )
            for n in range(100)
            for device in devices
        ]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()

    group = "test-resume"
    first = await _consume(topics, group, limit=180)
    second = await _consume(topics, group, limit=500 - 180)

    everything = first + second
    assert len(everything) == 500
    assert len(set(everything)) == 500, "a record was delivered twice"
    assert set(everything) == {(d, n) for d in devices for n in range(100)}
    for device in devices:
        order = [n for d, n in everything if d == device]
        assert order == sorted(order), f"{device} fixes out of order across the restart"


async def test_same_key_lands_in_one_partition(topics: Settings) -> None:
    producer = make_producer(topics, client_id="test")
    await producer.start()
    try:
        metas = [
            await (await producer.send(topics.topic("dlq.v1"), b"{}", key=b"EB-partition-check"))
            for _ in range(20)
        ]
    finally:
        await producer.stop()
    assert len({meta.partition for meta in metas}) == 1


@pytest.mark.parametrize("remembered", [kafka.REMEMBERED_KEYS, 7])
async def test_record_batches_land_where_send_puts_their_key_in_order(
    topics: Settings, remembered: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The router's batches must put an order's signals on the partition of the order's own
    records (the evaluator joins the two by partition): where `send` puts the key. A batch that
    fills up goes out and a new one takes the rest, in order. Each key's partition is
    remembered; with room for 7 keys of the 40, the memory empties again and again."""
    monkeypatch.setattr(kafka, "REMEMBERED_KEYS", remembered)
    async with scratch_topics(topics) as own:
        topic = own.topic("order-signals.v1")
        keys = [f"BB-{n:04d}".encode() for n in range(40)]
        producer = make_producer(own, client_id="test-batches")
        await producer.start()
        try:
            expected = {
                key: (await (await producer.send(topic, b"probe", key=key))).partition
                for key in keys
            }
            out = await RecordBatches.of(producer, topic)
            for n in range(25):
                for key in keys:
                    # ~8 KiB records: a partition's batch fills up and is sent mid-stream
                    await out.add(key, b"%d:" % n + bytes(8000))
            assert await out.flush() == 25 * len(keys)
            assert await out.flush() == 0
        finally:
            await producer.stop()
        consumer = make_consumer(own, topic, group_id=None, client_id="test-batches")
        await consumer.start()
        seen: dict[bytes, list[tuple[int, int]]] = {key: [] for key in keys}
        try:
            while sum(map(len, seen.values())) < 26 * len(keys):
                fetched = await asyncio.wait_for(consumer.getmany(timeout_ms=500), timeout=30)
                for tp, records in fetched.items():
                    for record in records:
                        assert record.key is not None and record.value is not None
                        if record.value != b"probe":
                            n = int(record.value.split(b":")[0])
                            seen[record.key].append((tp.partition, n))
                        else:
                            seen[record.key].append((tp.partition, -1))
        finally:
            await consumer.stop()
        for key in keys:
            assert {partition for partition, _ in seen[key]} == {expected[key]}
            assert [n for _, n in seen[key]] == list(range(-1, 25))


async def test_topics_exist_with_joined_partition_counts(topics: Settings) -> None:
    counts = await partition_counts(topics)
    assert counts[topics.topic("protection-orders.v1")] == topics.partitions
    assert counts[topics.topic("order-signals.v1")] == counts[topics.topic("protection-orders.v1")]


async def test_a_consumer_that_stops_fetching_while_records_wait_is_called_stalled(
    topics: Settings,
) -> None:
    """The watchdog for aiokafka's silent stalls: behind and not moving is a stall; caught up
    and quiet is not; moving again resets it."""
    topic = topics.topic("dlq.v1")  # any topic of this run; nothing here reads it as a DLQ
    producer = make_producer(topics, client_id="test-stall")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"waiting", partition=0)
    finally:
        await producer.stop()
    consumer = make_consumer(topics, group_id=None, client_id="test-stall")
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        consumer.seek(tp, end)  # caught up: however long it is quiet, no stall
        quiet = StallWatch(after_s=0.3, probe_s=0.05)
        for _ in range(10):
            await quiet.idle(consumer)
            await asyncio.sleep(0.06)

        consumer.seek(tp, end - 1)  # a record waits, and this consumer never fetches it
        stuck = StallWatch(after_s=0.3, probe_s=0.05)
        await asyncio.sleep(0.06)
        await stuck.idle(consumer)  # behind, but not for long yet
        stuck.moved()  # a record arrived: the clock starts again
        await asyncio.sleep(0.2)
        await stuck.idle(consumer)  # 0.2 s since it moved: still within the limit
        await asyncio.sleep(0.2)
        with pytest.raises(ConsumerStalled):
            await stuck.idle(consumer)
    finally:
        await consumer.stop()


async def test_periodic_commit_commits_at_most_once_a_period_and_flushes_the_rest(
    topics: Settings,
) -> None:
    """What a service's loop does with it: the first offsets go out at once, newer ones wait
    for the period (taking the newest), an empty turn after the period sends them, and a flush
    on stop sends what waits without waiting for the period."""
    topic = topics.topic("dlq.v1")  # any topic of this run: only offsets are committed
    tp = TopicPartition(topic, 1)
    consumer = make_consumer(topics, group_id="test-periodic-commit", client_id="test-commit")
    await consumer.start()

    async def committed_soon(expected: int | None) -> int | None:
        deadline = asyncio.get_running_loop().time() + 5
        while True:
            committed: int | None = await consumer.committed(tp)
            if committed == expected or asyncio.get_running_loop().time() > deadline:
                return committed
            await asyncio.sleep(0.02)

    try:
        consumer.assign([tp])
        commits = PeriodicCommit(consumer, quiet=False, every_s=0.5)
        commits.advance({tp: 3})
        assert await committed_soon(3) == 3
        commits.advance({tp: 5})
        commits.advance({tp: 7})
        await asyncio.sleep(0.1)
        assert await consumer.committed(tp) == 3, "committed again within the period"
        await asyncio.sleep(0.5)
        commits.advance({})  # an empty fetch after the period
        assert await committed_soon(7) == 7
        commits.advance({tp: 9})
        await commits.flush()
        assert await consumer.committed(tp) == 9
    finally:
        await consumer.stop()


async def test_periodic_commit_raises_a_failed_commit_unless_quiet(topics: Settings) -> None:
    """A failed commit (here: offsets of a partition the consumer was never assigned, which
    aiokafka refuses) restarts a service that needs its commits, and is shrugged off by one
    whose commits are informational."""
    absent = TopicPartition(topics.topic("dlq.v1"), topics.partitions + 7)
    for quiet in (True, False):
        consumer = make_consumer(topics, group_id="test-commit-fails", client_id="test-commit")
        await consumer.start()
        try:
            commits = PeriodicCommit(consumer, quiet=quiet, every_s=0.0)
            commits.advance({absent: 1})
            if quiet:
                await commits.flush()
            else:
                with pytest.raises(KafkaError):
                    await commits.flush()
        finally:
            await consumer.stop()
