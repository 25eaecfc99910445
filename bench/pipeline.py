"""`breachwatch bench pipeline`: the streaming spine on the real broker and database.

Every service runs as it does in production, as its own process (`breachwatch serve evaluator`,
`breachwatch serve router`), on a scratch database and scratch topics. The load generator in
this process builds Kafka record batches itself (partitioned by key with Kafka's own murmur2,
exactly as a producer would) so that it is not what limits the figures.

1. Orders: N orders (default 100k) with one monitored subject each (N devices): a circular
   location ban (centre + radius), a polygon area ban, a contact ban, and for one order in ten
   a municipality area ban (one of a handful of municipalities, compiled once and shared).
2. First start: the evaluator takes every order in from the orders topic and checkpoints it
   (orders/s), then stops, as for a deploy.
3. Catch-up: a backlog of routed signals (default 1M) on `bw.order-signals.v1` while it is
   down; it restarts, loads its orders from Postgres, and catches up: fixes/s from its first
   committed batch to its last, and its resident memory once it holds every order. Baseline in
   the same run: a bare consumer reading and decoding the same backlog (the ceiling of
   aiokafka + msgspec in one Python process).
4. Steady state: positions produced at fixed rates (default 1k/s and 5k/s) through
   fix_router and the evaluator; 1% of them enter their order's location ban. Latency is from
   handing the fix to the producer to reading its alert from `bw.alerts.v1`, with the CPU used
   by the router and the evaluator. Baseline in the same run: one Kafka hop (produce, consume)
   at the same rate, measured the same way.

A PNG plot of the latency distribution is written next to the results.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench import plots
from bench.ingest import home, order_body
from bench.processes import (
    cpu_seconds,
    gauge,
    quantile,
    resident_bytes,
    start_service,
    stop_service,
)
from deploy.scratch import asyncpg_dsn, scratch_database, scratch_topics
from geo.projection import LocalPlane
from schemas import wire
from services.adapters.database import migrate
from services.adapters.kafka import FETCH_MAX_WAIT_MS, RecordBatches
from services.adapters.settings import Settings

MUNICIPALITIES = ("GM0344", "GM0363", "GM0599", "GM0518", "GM0014")  # Utrecht, A'dam, R'dam, ...
TRIGGER_SHARE = 0.01
HELD = "bw_breach_evaluator_partitions_held"
QUIET_DISTANCE_M = 2000.0


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


@dataclass
class Fleet:
    """The orders of the run and where each subject lives."""

    run: str
    size: int

    def order_id(self, n: int) -> str:
        return f"BB-{self.run}-{n:07d}"

    def device(self, n: int) -> str:
        return f"EB-{self.run}-{n}"

    def order_event(self, n: int) -> bytes:
        body = order_body(n, self.run)
        if n % 10 == 0:
            code = MUNICIPALITIES[n // 10 % len(MUNICIPALITIES)]
            body["order"]["zones"].append(
                {"zone_id": "city", "kind": "area_ban", "municipality_code": code}
            )
        raw = msgspec.json.encode(body)
        wire.decode(wire.OrderEvent, raw)  # the bench feeds only what the contract accepts
        return raw

    def quiet(self, n: int, rng: random.Random) -> tuple[float, float]:
        """Somewhere QUIET_DISTANCE_M from home: clear of every zone of the order."""
        lat, lon = home(n)
        plane = LocalPlane.at(lat, lon)
        return plane.to_latlon(-QUIET_DISTANCE_M + rng.uniform(-50, 50), rng.uniform(-50, 50))


async def _producer(settings: Settings) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=0,
        max_batch_size=1 << 20, max_request_size=8 << 20, client_id="bw-bench-load",
    )  # fmt: skip
    await producer.start()
    return producer


async def produce_orders(settings: Settings, made: Fleet) -> float:
    producer = await _producer(settings)
    started = time.perf_counter()
    try:
        out = await RecordBatches.of(producer, settings.topic("protection-orders.v1"))
        for n in range(made.size):
            await out.add(made.order_id(n).encode(), made.order_event(n))
        await out.flush()
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def produce_backlog(settings: Settings, made: Fleet, total: int) -> float:
    """`total` routed signals, every subject in turn, 30 s apart in event time, 1% of them
    inside the order's location ban (all of them in the lower half of the orders)."""
    rng = random.Random(1)
    producer = await _producer(settings)
    started = time.perf_counter()
    encoder = msgspec.json.Encoder()
    t0 = time.time() - 6 * 3600
    try:
        out = await RecordBatches.of(producer, settings.topic("order-signals.v1"))
        for k in range(total):
            n = k % made.size
            t = t0 + (k // made.size) * 30 + n * 1e-4
            # Only the lower half enters zones here: the upper half keeps fresh zones for the
            # steady-state levels, where each of them opens one new episode.
            if n < made.size // 2 and rng.random() < 2 * TRIGGER_SHARE:
                lat, lon = home(n)
            else:
                lat, lon = made.quiet(n, rng)
            order_id = made.order_id(n)
            value = encoder.encode({
                "order_id": order_id, "device_id": made.device(n), "role": "subject",
                "person_id": f"P-{made.run}-{n}",
                "position": {"device_id": made.device(n), "ts": _utc(t), "lat": lat, "lon": lon,
                             "accuracy_m": 8.0},
            })  # fmt: skip
            await out.add(order_id.encode(), value)
        await out.flush()
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def _evaluated(conn: asyncpg.Connection, topic: str) -> int:
    done = await conn.fetchval(
        "SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets WHERE topic = $1", topic
    )
    return int(done)


async def _start_evaluator(settings: Settings) -> tuple[asyncio.subprocess.Process, str]:
    return await start_service(
        settings, "evaluator", extra_env={"BW_RULES_SIGNAL_LOST_AFTER_S": "36000"},
        ready_within_s=300,
    )  # fmt: skip


async def first_start(settings: Settings, orders: int) -> dict[str, Any]:
    """The evaluator's first start on the orders topic: orders/s from launch until every order
    is checkpointed; then it stops (SIGTERM), as for a deploy."""
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    topic = settings.topic("protection-orders.v1")
    launched = time.perf_counter()
    evaluator, _ = await _start_evaluator(settings)
    try:
        while (done := await _evaluated(conn, topic)) < orders:
            if time.perf_counter() - launched > 1800:
                raise SystemExit(f"first start stuck at {done} of {orders} orders")
            await asyncio.sleep(0.05)
        took = time.perf_counter() - launched
        return {"orders": orders, "orders_per_s": round(orders / took), "took_s": round(took, 1)}
    finally:
        await stop_service(evaluator)
        await conn.close()


async def catch_up(
    settings: Settings, total: int
) -> tuple[dict[str, Any], asyncio.subprocess.Process]:
    """Restart the evaluator on the backlog: the time until it holds every partition (loaded
    from Postgres), then fixes/s from there to its last commit. Signals evaluated before that
    are left out of the rate and counted (`evaluated_while_loading`: none, as the evaluator
    loads every partition before its first batch)."""
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    topic = settings.topic("order-signals.v1")
    launched = time.perf_counter()
    evaluator, url = await _start_evaluator(settings)
    ready = time.perf_counter()
    try:
        first: tuple[float, int] | None = None  # when every partition was held, and done then
        first_commit: float | None = None
        while True:
            done = await _evaluated(conn, topic)
            now = time.perf_counter()
            if first_commit is None and done > 0:
                first_commit = now
            if first is None and await gauge(url, HELD) == settings.partitions:
                first = (now, done)
            if done >= total:
                break
            if now - launched > 1800:
                raise SystemExit(f"catch-up stuck at {done} of {total}")
            await asyncio.sleep(0.05)
        assert first_commit is not None
        if first is None or first[1] >= total:  # a backlog too small: time it from readiness
            first = (ready, 0)
        rss = resident_bytes(evaluator.pid)
        row = {
            "backlog": total,
            "fixes_per_s": round((total - first[1]) / max(now - first[0], 1e-9)),
            "from_launch_s": round(now - launched, 1),
            "first_commit_after_s": round(first_commit - launched, 1),
            "all_loaded_after_s": round(first[0] - launched, 1),
            "evaluated_while_loading": first[1],
            "evaluator_rss_mib": round(rss / 2**20),
        }
        return row, evaluator
    except BaseException:
        await stop_service(evaluator)
        raise
    finally:
        await conn.close()


async def bare_consumer(settings: Settings, total: int) -> float:
    """Baseline: read and decode the same backlog in one process, nothing else; records/s.
    Decoded as the evaluator does, with `wire.decode` (a bare msgspec decoder would skip the
    id checks and flatter the baseline)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False,
        max_partition_fetch_bytes=4 << 20, fetch_max_wait_ms=5,
    )  # fmt: skip
    await consumer.start()
    try:
        topic = settings.topic("order-signals.v1")
        consumer.assign([TopicPartition(topic, p) for p in range(settings.partitions)])
        await consumer.seek_to_beginning()
        seen = 0
        started = time.perf_counter()
        while seen < total:
            for records in (await consumer.getmany(timeout_ms=100, max_records=10_000)).values():
                for record in records:
                    wire.decode(wire.OrderSignal, record.value or b"")
                seen += len(records)
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


@dataclass
class Level:
    rate: int
    latencies_ms: list[float]
    achieved_rate: float
    cpu: dict[str, float]
    # Where an alert's latency went, per alert, in ms: fix produced -> detected (its `detected_at`,
    # the evaluator's clock when it took the batch in), detected -> alert handed to Kafka (the
    # record's timestamp: evaluation, the batch's write, the write before it), -> alert read.
    stages_ms: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class Reader:
    """Reads a topic from its end and notes when the record of each key in `sent` arrives."""

    settings: Settings
    topic: str
    key_of: Any
    sent: dict[str, float] = field(default_factory=dict)
    got: dict[str, float] = field(default_factory=dict)
    detected: dict[str, float] = field(default_factory=dict)  # alerts only: detected_at
    handed: dict[str, float] = field(default_factory=dict)  # the record's timestamp
    positioned: asyncio.Event = field(default_factory=asyncio.Event)
    sending_done: asyncio.Event = field(default_factory=asyncio.Event)
    complete: asyncio.Event = field(default_factory=asyncio.Event)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap, group_id=None,
            enable_auto_commit=False, fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )  # fmt: skip
        await consumer.start()
        try:
            partitions = [TopicPartition(self.topic, p) for p in range(self.settings.partitions)]
            consumer.assign(partitions)
            await consumer.seek_to_end(*partitions)
            for tp in partitions:
                await consumer.position(tp)
            self.positioned.set()
            while not self.stop.is_set():
                fetched = await consumer.getmany(timeout_ms=20)
                now = time.time()
                for records in fetched.values():
                    for record in records:
                        key, detected = self.key_of(record.value)
                        if key in self.sent and key not in self.got:
                            self.got[key] = now
                            self.handed[key] = record.timestamp / 1000
                            if detected is not None:
                                self.detected[key] = detected
                if self.sending_done.is_set() and len(self.got) >= len(self.sent):
                    self.complete.set()
        finally:
            await consumer.stop()


def _alert_key(raw: bytes) -> tuple[str | None, float | None]:
    alert = msgspec.json.decode(raw)
    if alert.get("rule") == "location_ban" and alert.get("seq") == 0:
        detected = datetime.fromisoformat(alert["detected_at"]).timestamp()
        return str(alert["order_id"]), detected
    return None, None


def _echo_key(raw: bytes) -> tuple[str, None]:
    return str(msgspec.json.decode(raw)["key"]), None


@contextlib.contextmanager
def _no_collector_pauses() -> Iterator[None]:
    """The load generator and the alert reader are the instrument. A full collection over the
    fleet's objects (90-135 ms here) stamped a position's time and then held the position
    back, and the pause was counted as the pipeline's latency. During a level, what it
    allocates is freed by reference counting; cyclic garbage waits for the level's end."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


async def steady(
    settings: Settings, made: Fleet, rate: int, seconds: float, pids: dict[str, int],
    reserved: list[int], *, baseline: bool,
) -> Level:  # fmt: skip
    """Positions at `rate`/s for `seconds`; every 100th enters its location ban (on a subject
    from `reserved`, whose last fix is hours old, so it is no teleport). With `baseline`, the
    same load goes to a scratch topic read back directly: one Kafka hop."""
    rng = random.Random(rate)
    producer = await _producer(settings)
    # The baseline's topic: the scratch CJIB topic, which nothing reads during the bench.
    topic = settings.cjib_orders_topic if baseline else settings.topic("positions.v1")
    read_from = topic if baseline else settings.topic("alerts.v1")
    # A tick's positions go out as one record batch per partition: the generator shares the
    # machine with what it measures, and aiokafka's `send` costs tens of us a record. The
    # topic's metadata is fetched here, before the first timed position.
    out = await RecordBatches.of(producer, topic)
    reader = Reader(settings, read_from, _echo_key if baseline else _alert_key)
    sent, got = reader.sent, reader.got
    reading = asyncio.create_task(reader.run())
    await asyncio.wait_for(reader.positioned.wait(), 30)
    tick_s = 0.01
    per_tick = max(1, round(rate * tick_s))
    produced = 0
    with _no_collector_pauses():
        # The clock starts after the collection above: started before it, the first tick came
        # ~0.1 s late, with several ticks' positions at once, and their alerts late by as much.
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        own_before = time.process_time()
        started = time.perf_counter()
        try:
            while (elapsed := time.perf_counter() - started) < seconds:
                due = int(elapsed / tick_s) * per_tick + per_tick
                timed = []
                while produced < due:
                    trigger = produced % int(1 / TRIGGER_SHARE) == 0 and bool(reserved)
                    n = reserved.pop() if trigger else rng.randrange(made.size // 2)
                    lat, lon = home(n) if trigger else made.quiet(n, rng)
                    key = made.device(n).encode()
                    position = {"device_id": made.device(n), "ts": _utc(time.time()),
                                "lat": lat, "lon": lon, "accuracy_m": 6.0}  # fmt: skip
                    if baseline:
                        position["key"] = made.order_id(n)
                    if trigger:
                        timed.append(made.order_id(n))
                    await out.add(key, msgspec.json.encode(position))
                    produced += 1
                # A fix is produced when its batch is handed to the producer. The generator
                # builds a tick's batch first (50 positions at 5k/s, ~0.6 ms here), and that
                # is the bench's time, not the pipeline's.
                handed_at = time.time()
                for order_id in timed:
                    sent[order_id] = handed_at
                await out.send_open()
                next_tick = started + (due / per_tick) * tick_s
                await asyncio.sleep(max(0.0, next_tick - time.perf_counter()))
            wall = time.perf_counter() - started
            await out.flush()
            cpu = {name: (cpu_seconds(pid) - cpu_before[name]) / wall
                   for name, pid in pids.items()}  # fmt: skip
            cpu["load_generator"] = (time.process_time() - own_before) / wall
            reader.sending_done.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reader.complete.wait(), 30)
        finally:
            reader.stop.set()
            await reading
            await producer.stop()
    missing = len(sent) - len(got)
    if missing:
        print(f"[bench pipeline] {missing} of {len(sent)} alerts not seen within 30 s",
              file=sys.stderr)  # fmt: skip
    latencies = [(got[k] - sent[k]) * 1000 for k in got]
    stages: dict[str, list[float]] = {}
    if not baseline:
        detected, handed = reader.detected, reader.handed
        stages = {
            "to detection": [(detected[k] - sent[k]) * 1000 for k in got],
            "detection to send": [(handed[k] - detected[k]) * 1000 for k in got],
            "send to read": [(got[k] - handed[k]) * 1000 for k in got],
        }
    return Level(rate, latencies, produced / wall, cpu, stages)


def _summary(level: Level) -> dict[str, Any]:
    values = level.latencies_ms
    return {
        "rate": level.rate,
        "achieved_per_s": round(level.achieved_rate),
        "samples": len(values),
        "p50_ms": round(quantile(values, 0.50), 1),
        "p95_ms": round(quantile(values, 0.95), 1),
        "p99_ms": round(quantile(values, 0.99), 1),
        "cpu": {name: round(share, 2) for name, share in level.cpu.items()},
        "stages_p50_ms": {
            name: round(quantile(values, 0.50), 1) for name, values in level.stages_ms.items()
        },
        "stages_of_slowest_1pct_ms": _stages_of_slowest(level, 0.99),
    }


def _stages_of_slowest(level: Level, q: float) -> dict[str, float]:
    """Each stage's mean over the samples at or above quantile `q` of the whole path: which
    stage the tail comes from (stages' own quantiles do not add up to the path's)."""
    values = level.latencies_ms
    if not values or not level.stages_ms:
        return {}
    limit = quantile(values, q)
    slow = [k for k, value in enumerate(values) if value >= limit]
    return {
        name: round(sum(stage[k] for k in slow) / len(slow), 1)
        for name, stage in level.stages_ms.items()
    }


@dataclass(frozen=True)
class Target:
    """One of issue #6's targets: a figure of the run and its limit (the run's size it holds
    at is `against_targets`')."""

    name: str
    limit: float
    at_most: bool  # the figure may not exceed the limit (else: may not fall below it)

    def met_by(self, value: float) -> bool:
        return value <= self.limit if self.at_most else value >= self.limit


TARGET_ORDERS = 100_000
TARGET_BACKLOG = 1_000_000
TARGET_RATE = 5_000
CATCH_UP = Target("catch-up, fixes/s", 100_000, at_most=False)
P50 = Target(f"p50 ms at {TARGET_RATE:,} fixes/s", 10.0, at_most=True)
P99 = Target(f"p99 ms at {TARGET_RATE:,} fixes/s", 25.0, at_most=True)
RESIDENT = Target(f"evaluator resident MiB at {TARGET_ORDERS:,} orders", 1024, at_most=True)


def against_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target beside this run's figure; `met` is None where the run was not of the
    target's size (fewer orders, a shorter backlog, no 5k level), as a small run's figures say
    nothing of it. Resident memory counts the larger of its two readings."""
    caught = results["catch_up"]
    full_size = results["orders"] == TARGET_ORDERS
    at_rate = [row for row in results["steady"] if row["rate"] == TARGET_RATE]
    measured: list[tuple[Target, float | None]] = [
        (CATCH_UP, caught["fixes_per_s"]
         if full_size and caught["backlog"] >= TARGET_BACKLOG else None),
        (P50, at_rate[0]["p50_ms"] if full_size and at_rate else None),
        (P99, at_rate[0]["p99_ms"] if full_size and at_rate else None),
        (RESIDENT, max(caught["evaluator_rss_mib"], caught["evaluator_rss_mib_after_load"])
         if full_size else None),
    ]  # fmt: skip
    return [
        {
            "target": target.name,
            "limit": target.limit,
            "at_most": target.at_most,
            "measured": value,
            "met": None if value is None else target.met_by(value),
        }
        for target, value in measured
    ]


def plot(levels: list[tuple[str, Level]], path: Path) -> None:
    plots.cdf(
        {f"{label} ({len(level.latencies_ms)} samples)": level.latencies_ms
         for label, level in levels if level.latencies_ms},
        path, title=f"breachwatch pipeline latency (target p50 <= {P50.limit:g} ms, "
                    f"p99 <= {P99.limit:g} ms)",
        xlabel="fix produced -> alert read (ms, log scale)", marks=(P50.limit, P99.limit),
    )  # fmt: skip


async def measure(
    base: Settings, orders: int, backlog: int, rates: list[int], seconds: float, plot_to: Path
) -> dict[str, Any]:
    async with scratch_database(base.database_url) as url:
        await migrate(url)
        async with scratch_topics(base.model_copy(update={"database_url": url})) as settings:
            made = Fleet(os.urandom(3).hex(), orders)
            orders_s = await produce_orders(settings, made)
            started = await first_start(settings, orders)
            print(f"[bench pipeline] first start {started}", file=sys.stderr)
            backlog_s = await produce_backlog(settings, made, backlog)
            print(f"[bench pipeline] {orders:,} orders in {orders_s:.1f} s, {backlog:,} backlog "
                  f"signals in {backlog_s:.1f} s", file=sys.stderr)  # fmt: skip
            ceiling = await bare_consumer(settings, backlog)
            caught, evaluator = await catch_up(settings, backlog)
            caught["bare_consumer_per_s"] = round(ceiling)
            caught["ratio_vs_bare_consumer"] = round(caught["fixes_per_s"] / ceiling, 2)
            print(f"[bench pipeline] catch-up {caught}", file=sys.stderr)
            router = None
            try:
                router, _ = await start_service(settings, "router", ready_within_s=300)
                pids = {"router": router.pid, "evaluator": evaluator.pid}
                # Subjects of the upper half enter their zone once each; the lower half moves.
                reserved = list(range(orders // 2, orders))
                random.Random(3).shuffle(reserved)
                levels: list[tuple[str, Level]] = []
                rows = []
                for rate in rates:
                    floor = await steady(settings, made, rate, seconds, {}, list(reserved),
                                         baseline=True)  # fmt: skip
                    level = await steady(settings, made, rate, seconds, pids, reserved,
                                         baseline=False)  # fmt: skip
                    row = _summary(level)
                    one_hop = _summary(floor)
                    row["one_hop_p50_ms"], row["one_hop_p99_ms"] = (
                        one_hop["p50_ms"],
                        one_hop["p99_ms"],
                    )
                    row["p99_vs_one_hop"] = round(row["p99_ms"] / max(one_hop["p99_ms"], 0.01), 1)
                    rows.append(row)
                    levels += [(f"pipeline {rate}/s", level), (f"one Kafka hop {rate}/s", floor)]
                    print(f"[bench pipeline] {row}", file=sys.stderr)
                caught["evaluator_rss_mib_after_load"] = round(
                    resident_bytes(evaluator.pid) / 2**20
                )
            finally:
                if router is not None:
                    await stop_service(router)
                await stop_service(evaluator)
    plot(levels, plot_to)
    machine = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    results = {"machine": machine, "orders": orders, "first_start": started, "catch_up": caught,
               "steady": rows, "plot": str(plot_to)}  # fmt: skip
    results["targets"] = against_targets(results)
    return results


def main(
    orders: int, backlog: int, rates: list[int], seconds: float, plot_to: Path, as_json: bool
) -> dict[str, Any]:
    base = Settings()
    results = asyncio.run(measure(base, orders, backlog, rates, seconds, plot_to))
    if as_json:
        print(json.dumps(results))
        return results
    f, c = results["first_start"], results["catch_up"]
    print(f"first start: {f['orders']:,} orders taken in from the topic and checkpointed in "
          f"{f['took_s']} s ({f['orders_per_s']:,} orders/s)")  # fmt: skip
    print(f"catch-up after a restart, {c['backlog']:,} signals, {orders:,} orders: "
          f"{c['fixes_per_s']:,} fixes/s "
          f"({c['ratio_vs_bare_consumer']} x a bare consumer's {c['bare_consumer_per_s']:,}/s), "
          f"every partition loaded {c['all_loaded_after_s']} s after launch; "
          f"evaluator resident {c['evaluator_rss_mib']} MiB, "
          f"{c['evaluator_rss_mib_after_load']} MiB after the steady load")  # fmt: skip
    print(
        "| fixes/s | achieved | alerts | p50 ms | p95 ms | p99 ms | one hop p50/p99 ms "
        "| p99 x one hop | CPU router | CPU evaluator | CPU generator |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results["steady"]:
        cpu = r["cpu"]
        print(f"| {r['rate']:,} | {r['achieved_per_s']:,} | {r['samples']} | {r['p50_ms']} "
              f"| {r['p95_ms']} | {r['p99_ms']} | {r['one_hop_p50_ms']}/{r['one_hop_p99_ms']} "
              f"| {r['p99_vs_one_hop']} | {cpu['router']:.0%} | {cpu['evaluator']:.0%} "
              f"| {cpu['load_generator']:.0%} |")  # fmt: skip
    for r in results["steady"]:
        stages = ", ".join(f"{name} {ms} ms" for name, ms in r["stages_p50_ms"].items())
        print(f"p50 by stage at {r['rate']:,}/s: {stages}")
        tail = ", ".join(f"{name} {ms} ms" for name, ms in r["stages_of_slowest_1pct_ms"].items())
        print(f"slowest 1% at {r['rate']:,}/s, mean by stage: {tail}")
    for judged in results["targets"]:
        sign = "<=" if judged["at_most"] else ">="
        verdict = {True: "met", False: "NOT met", None: "not measured at this size"}[judged["met"]]
        value = "-" if judged["measured"] is None else f"{judged['measured']:,}"
        print(f"target {judged['target']} {sign} {judged['limit']:,}: {value}, {verdict}")
    print(f"latency plot: {results['plot']}")
    return results
