"""The breach evaluator SIGKILLed again and again in the middle of a stream, and two evaluators
sharing the partitions with one of them killed for good: after deduplication by (alert_id,
seq), the alerts equal those of a run without crashes - nothing missed, nothing extra. Each run
has a database and topics of its own; evaluators run as their own processes
(`breachwatch serve evaluator`), exactly as deployed."""

from __future__ import annotations

import asyncio
import math
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bench.processes import gauge
from deploy.scratch import asyncpg_dsn, environment_of, free_port
from schemas import wire
from services.adapters.settings import Settings
from tests.support.kafka import topic_values, wait_for
from tests.support.scenario import SIGNALS, Stream, comparable, environment, produce, scenario

pytestmark = pytest.mark.integration

KILLS = 10


async def start_evaluator(
    settings: Settings, log: Path, port: int | None = None
) -> asyncio.subprocess.Process:
    env = {**os.environ, **environment_of(settings), "BW_HTTP_PORT": str(port or free_port()),
           "BW_RULES_SIGNAL_LOST_AFTER_S": "36000", "BW_LOG_LEVEL": "WARNING"}  # fmt: skip
    executable = str(Path(sys.executable).with_name("breachwatch"))
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            executable, "serve", "evaluator", env=env, stdout=out, stderr=out,
            stdin=asyncio.subprocess.DEVNULL,
        )  # fmt: skip


async def progress(settings: Settings) -> tuple[int, int, int]:
    """(signals the evaluator has committed, order records committed, alerts not yet
    published). A record is committed in the transaction that checkpoints what it changed."""
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        done = await conn.fetchval(
            "SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets WHERE topic = $1",
            settings.topic("order-signals.v1"),
        )
        held = await conn.fetchval(
            "SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets WHERE topic = $1",
            settings.topic("protection-orders.v1"),
        )
        unpublished = await conn.fetchval(
            "SELECT count(*) FROM alert_outbox WHERE published_at IS NULL"
        )
        return int(done), int(held), int(unpublished)
    finally:
        await conn.close()


async def run(base: Settings, orders: Stream, signals: Stream, kills: int, log: Path) -> list[Any]:
    async with environment(base) as settings:
        await produce(settings, settings.topic("protection-orders.v1"), orders)
        evaluator = await start_evaluator(settings, log)
        killed = 0
        rng = random.Random(7)
        try:
            # The orders first, checkpointed, so no signal can overtake its order.
            await _until_orders_checkpointed(settings, len(orders))
            kills_done = asyncio.Event()
            if kills == 0:
                kills_done.set()
            feeding = asyncio.create_task(_feed(settings, signals, kills_done))
            deadline = time.monotonic() + 600
            while True:
                done, _, unpublished = await progress(settings)
                if done >= len(signals) and unpublished == 0 and feeding.done():
                    break
                assert time.monotonic() < deadline, f"stuck at {done} of {len(signals)}"
                if killed < kills and done < len(signals):
                    await asyncio.sleep(rng.uniform(1.0, 4.0))
                    evaluator.send_signal(signal.SIGKILL)
                    await evaluator.wait()
                    killed += 1
                    evaluator = await start_evaluator(settings, log)
                    if killed == kills:
                        kills_done.set()
                else:
                    await asyncio.sleep(0.3)
            await feeding
        finally:
            if evaluator.returncode is None:
                evaluator.terminate()
                await evaluator.wait()
        assert killed == kills, f"only {killed} kills landed before the stream ended"
        raw = await topic_values(settings, settings.topic("alerts.v1"))
    return [wire.decode(wire.Alert, value) for value in raw]


async def _until_orders_checkpointed(settings: Settings, count: int) -> None:
    for _ in range(300):
        if (await progress(settings))[1] >= count:
            return
        await asyncio.sleep(0.2)
    raise AssertionError("the evaluator never checkpointed the orders")


async def _feed(settings: Settings, signals: Stream, kills_done: asyncio.Event) -> None:
    """In 40 slices a second apart, the last held back until every kill has landed, so that
    all of them hit a stream still in flight."""
    slices = 40
    size = math.ceil(len(signals) / slices)
    starts = list(range(0, len(signals), size))
    for start in starts:
        if start == starts[-1]:
            await kills_done.wait()
        await produce(settings, settings.topic("order-signals.v1"), signals[start : start + size])
        await asyncio.sleep(1.0)


@pytest.mark.timeout(1500)
async def test_alerts_survive_ten_sigkills_of_the_evaluator(
    migrated: Settings, tmp_path: Path
) -> None:
    orders, signals = scenario(seed=11)
    assert len(signals) >= SIGNALS
    clean = comparable(await run(migrated, orders, signals, 0, tmp_path / "clean.log"))
    crashed = comparable(await run(migrated, orders, signals, KILLS, tmp_path / "crashed.log"))
    assert len(clean) > 100, "the scenario raised too few alerts to prove anything"
    rules = {rule for _, rule, *_ in clean.values()}
    assert {"location_ban", "area_ban", "contact_ban", "tamper"} <= rules, rules
    missed = clean.keys() - crashed.keys()
    extra = crashed.keys() - clean.keys()
    assert not missed and not extra, f"missed {len(missed)}, extra {len(extra)}"
    differ = [key for key in clean if clean[key] != crashed[key]]
    example = f"{clean[differ[0]]} vs {crashed[differ[0]]}" if differ else ""
    assert not differ, f"{len(differ)} alerts differ, e.g. {example}"


async def partitions_held(port: int) -> int:
    """The evaluator's own gauge, from its /metrics; -1 while it does not answer."""
    held = await gauge(f"http://127.0.0.1:{port}", "bw_breach_evaluator_partitions_held")
    return -1 if held is None else int(held)


@pytest.mark.timeout(900)
async def test_two_evaluators_share_the_partitions_and_one_takes_over_from_the_other(
    migrated: Settings, tmp_path: Path
) -> None:
    orders, signals = scenario(seed=17, orders_n=50, signals_n=8000)
    clean = comparable(await run(migrated, orders, signals, 0, tmp_path / "clean.log"))
    async with environment(migrated) as settings:
        await produce(settings, settings.topic("protection-orders.v1"), orders)
        ports = [free_port(), free_port()]
        first, second = [await start_evaluator(settings, tmp_path / f"e{p}.log", p) for p in ports]
        try:

            async def shared() -> bool:
                held = [await partitions_held(p) for p in ports]
                return min(held) > 0 and sum(held) == settings.partitions

            assert await wait_for(shared, timeout_s=90), "the two never shared the partitions"
            await _until_orders_checkpointed(settings, len(orders))
            half = len(signals) // 2
            await produce(settings, settings.topic("order-signals.v1"), signals[:half])

            async def under_way() -> bool:
                return (await progress(settings))[0] >= half // 3

            assert await wait_for(under_way, timeout_s=120), "the evaluators never got going"
            first.send_signal(signal.SIGKILL)
            await first.wait()
            await produce(settings, settings.topic("order-signals.v1"), signals[half:])

            async def taken_over() -> bool:
                return await partitions_held(ports[1]) == settings.partitions

            assert await wait_for(taken_over, timeout_s=60), "the survivor never took over"
            deadline = time.monotonic() + 300
            while True:
                done, _, unpublished = await progress(settings)
                if done >= len(signals) and unpublished == 0:
                    break
                assert time.monotonic() < deadline, f"stuck at {done} of {len(signals)}"
                await asyncio.sleep(0.3)
        finally:
            for evaluator in (first, second):
                if evaluator.returncode is None:
                    evaluator.terminate()
                    await evaluator.wait()
        raw = await topic_values(settings, settings.topic("alerts.v1"))
    shared_run = comparable([wire.decode(wire.Alert, value) for value in raw])
    assert len(clean) > 50, "the scenario raised too few alerts to prove anything"
    missed = clean.keys() - shared_run.keys()
    extra = shared_run.keys() - clean.keys()
    assert not missed and not extra, f"missed {len(missed)}, extra {len(extra)}"
    assert shared_run == clean
