"""The fixes and device events behind an alert, read back from `bw.order-signals.v1`.

Every signal of an order is on one partition of that topic (key `order_id`), each pointing at
its raw record (`source`). A dossier reads the stretch of that partition around the episode,
found by log time, and keeps the signals of the order; the dossier is then frozen in Postgres,
so the evidence outlives the topic's retention.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from aiokafka import TopicPartition

from schemas import wire
from services.adapters.kafka import make_consumer, partition_counts, partition_of_key
from services.adapters.settings import Settings

# Signals are routed shortly after their fix is taken; a device out of coverage delivers its
# buffered fixes later. The log is read this much wider than the episode to catch both.
LOG_MARGIN = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class Evidence:
    signals: list[wire.OrderSignal]
    scanned: int
    complete: bool  # False when the scan stopped at its cap before the end of the window


async def signals_of_order(
    settings: Settings,
    order_id: str,
    start: datetime,
    end: datetime,
    *,
    cap: int = 500_000,
) -> Evidence:
    """The signals of `order_id` whose event time lies in [start, end], in log order."""
    topic = settings.topic("order-signals.v1")
    count = (await partition_counts(settings, [topic])).get(topic, 0)
    if not count:
        return Evidence([], 0, False)
    consumer = make_consumer(settings, group_id=None, client_id="bw-dossier-evidence")
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition_of_key(order_id.encode(), range(count)))
        consumer.assign([tp])
        first = await consumer.offsets_for_times({tp: int((start - LOG_MARGIN).timestamp() * 1000)})
        if first[tp] is None:
            return Evidence([], 0, True)  # nothing logged since the window opened
        last = await consumer.offsets_for_times({tp: int((end + LOG_MARGIN).timestamp() * 1000)})
        stop_at = (
            last[tp].offset if last[tp] is not None else (await consumer.end_offsets([tp]))[tp]
        )
        consumer.seek(tp, first[tp].offset)
        found: list[wire.OrderSignal] = []
        scanned = 0
        while scanned < cap and await consumer.position(tp) < stop_at:
            batch = await consumer.getmany(tp, timeout_ms=500, max_records=5000)
            for record in batch.get(tp, []):
                if record.offset >= stop_at:
                    break
                scanned += 1
                try:
                    signal = wire.decode(wire.OrderSignal, record.value or b"")
                except wire.ContractError:
                    continue  # the router wrote it; unreadable means a bug there, not evidence
                if signal.order_id == order_id and start <= _event_time(signal) <= end:
                    found.append(signal)
        return Evidence(found, scanned, scanned < cap)
    finally:
        await consumer.stop()


def _event_time(signal: wire.OrderSignal) -> datetime:
    if signal.position is not None:
        return signal.position.ts
    assert signal.event is not None
    return signal.event.ts
