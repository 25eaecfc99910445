"""Playing a plan onto Kafka in real time: the orders onto the CJIB topic (as CJIB sends them),
then every position and device event at its moment, batched per moment so the generator
keeps up. Works against any cluster the settings point at (the demo's embedded broker, CI's
Apache Kafka, a real one)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import groupby

from services.adapters.kafka import make_producer
from services.adapters.settings import Settings
from simulator.script import Plan


@dataclass
class Summary:
    orders: int = 0
    records: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    behind_s: float = 0.0  # the furthest the generator fell behind its schedule

    def lines(self) -> list[str]:
        sent = ", ".join(f"{n} on {topic}" for topic, n in sorted(self.records.items()))
        return [
            f"orders sent: {self.orders}",
            f"records sent: {sent or 'none'} in {self.seconds:.1f} s",
            f"furthest behind schedule: {self.behind_s * 1000:.0f} ms",
        ]


async def drive(
    settings: Settings,
    scripted: Plan,
    *,
    clock: Callable[[], float] = time.time,
    progress: Callable[[str], None] = lambda line: None,
    report_every_s: float = 5.0,
    orders_known: Callable[[], Awaitable[bool]] | None = None,
) -> Summary:
    """Send the plan's orders now and each record at `scripted.start + record.at_s`. With
    `orders_known`, the records wait until it says the system has the orders; the script
    then runs that much later, its timestamps moved with it."""
    summary = Summary()
    producer = make_producer(settings, client_id="bw-simulator", linger_ms=5)
    await producer.start()
    began = clock()
    try:
        for event in scripted.orders:
            await producer.send(settings.cjib_orders_topic, json.dumps(event).encode(),
                                key=event["order"]["order_id"].encode())  # fmt: skip
        await producer.flush()
        summary.orders = len(scripted.orders)
        progress(f"{summary.orders} orders sent to {settings.cjib_orders_topic}")
        shift = 0.0
        if orders_known is not None:
            for _ in range(1200):
                if await orders_known():
                    break
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("the system did not take the orders in within 120 s")
            shift = max(0.0, clock() - scripted.start + 1.0)
        reported = clock()
        for at_s, moment in groupby(scripted.records, key=lambda r: r.at_s):
            wait = scripted.start + shift + at_s - clock()
            if wait > 0:
                await asyncio.sleep(wait)
            else:
                summary.behind_s = max(summary.behind_s, -wait)
            for record in moment:
                topic = settings.topic(record.topic)
                value = json.dumps(_shifted(record.value, shift)).encode()
                await producer.send(topic, value, key=record.key.encode())
                summary.records[topic] += 1
            if clock() - reported >= report_every_s:
                reported = clock()
                done = sum(summary.records.values())
                progress(f"{at_s:6.0f} s of {scripted.duration_s:.0f}: {done} of "
                         f"{len(scripted.records)} records sent")  # fmt: skip
        await producer.flush()
    finally:
        await producer.stop()
    summary.seconds = clock() - began
    return summary


def _shifted(value: dict[str, object], shift: float) -> dict[str, object]:
    if not shift:
        return value
    taken = datetime.fromisoformat(str(value["ts"]).replace("Z", "+00:00")).timestamp()
    moved = datetime.fromtimestamp(taken + shift, UTC).isoformat(timespec="milliseconds")
    return {**value, "ts": moved.replace("+00:00", "Z")}
