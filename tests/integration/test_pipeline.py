"""The streaming spine on the real broker and database: orders over HTTP, fixes through Kafka,
fix_router and breach_evaluator in between, alerts on `bw.alerts.v1`; bad records in the DLQ."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator

import msgspec
import pytest

from schemas import wire
from services.adapters.settings import Settings
from tests.support.kafka import topic_values, wait_for
from tests.support.orders import circle
from tests.support.pipeline import (
    Pipeline,
    alerts_of,
    by_episode,
    issue,
    new_device,
    position,
    running_pipeline,
    walk_in,
)
from tests.support.scenario import produce, utc

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def pipeline(migrated: Settings) -> AsyncIterator[Pipeline]:
    async with running_pipeline(migrated) as running:
        yield running


async def test_a_subject_entering_a_location_ban_raises_one_alert_on_the_topic(
    pipeline: Pipeline,
) -> None:
    device = new_device()
    order_id = await issue(pipeline, device, contact_bans=[], zones=[circle("home", 0, 0, 200)])
    positions = pipeline.settings.topic("positions.v1")
    await produce(pipeline.settings, positions, walk_in(device, time.time() - 60))

    bans = await alerts_of(pipeline.settings, order_id, "location_ban")
    assert {a.alert_id for a in bans} == {bans[0].alert_id}  # one episode, one alert id
    assert (bans[0].status, bans[0].zone_id, bans[0].severity, bans[0].certainty) == (
        "open", "home", "breach", "certain",
    )  # fmt: skip


async def test_malformed_positions_go_to_the_dlq_and_the_good_ones_still_alert(
    pipeline: Pipeline,
) -> None:
    device = new_device()
    order_id = await issue(pipeline, device, contact_bans=[], zones=[circle("home", 0, 0, 200)])
    key = device.encode()
    bad = [
        (key, b"{not json"),
        (key, msgspec.json.encode({"device_id": device, "ts": utc(time.time()), "lat": 200,
                                   "lon": 5, "accuracy_m": 5})),
        (key, msgspec.json.encode({"device_id": device, "ts": utc(time.time()), "lat": 52,
                                   "lon": 5, "accuracy_m": 0})),
    ]  # fmt: skip
    good = walk_in(device, time.time() - 60)
    mixed = [good[0], *bad[:2], *good[1:4], bad[2], *good[4:]]
    await produce(pipeline.settings, pipeline.settings.topic("positions.v1"), mixed)

    bans = await alerts_of(pipeline.settings, order_id, "location_ban")
    assert bans[0].status == "open"

    async def lettered() -> list[wire.DeadLetter]:
        # Only this device's records: other tests of the session write to the same topic, and
        # not all of them dead letters (test_real_kafka uses it as a scratch topic).
        raw = await topic_values(pipeline.settings, pipeline.settings.topic("dlq.v1"), device)
        mine = [wire.decode(wire.DeadLetter, value) for value in raw]
        return mine if len(mine) >= len(bad) else []

    letters = await wait_for(lettered, timeout_s=30)
    assert sorted(base64.b64decode(d.raw_b64) for d in letters) == sorted(v for _, v in bad)
    assert {base64.b64decode(d.key_b64 or "") for d in letters} == {key}  # the key kept
    reasons = " | ".join(d.reason for d in letters)
    assert "lat" in reasons and "accuracy_m" in reasons, reasons
    assert {d.service for d in letters} == {"fix_router"}
    assert {d.source_topic for d in letters} == {pipeline.settings.topic("positions.v1")}


async def test_signals_routed_again_after_a_router_crash_change_nothing(
    pipeline: Pipeline,
) -> None:
    """fix_router is at least once: after a crash it routes records again, with the same
    source offsets. Without deduplication the old fixes inside the zone would come back as
    late evidence of a new breach."""
    device = new_device()
    order_id = await issue(pipeline, device, contact_bans=[], zones=[circle("home", 0, 0, 200)])
    settings = pipeline.settings
    start = time.time() - 900
    path = [(-1000, 0), (0, 0), (20, 0), (-1000, 0), (-1500, 0), (-1500, 0), (-1500, 0)]
    positions_topic = settings.topic("positions.v1")

    def routed(n: int, x: float, y: float) -> tuple[bytes, bytes]:
        return order_id.encode(), msgspec.json.encode({
            "order_id": order_id, "device_id": device, "role": "subject", "person_id": "P-1",
            "position": msgspec.json.decode(position(device, start + n * 100, x, y)),
            "source": {"topic": positions_topic, "partition": 3, "offset": 40 + n},
        })  # fmt: skip

    signals = [routed(n, x, y) for n, (x, y) in enumerate(path)]
    await produce(settings, settings.topic("order-signals.v1"), signals)
    first = await alerts_of(settings, order_id, "location_ban",
                            until=lambda a: any(x.status == "closed" for x in a))  # fmt: skip
    evaluator = pipeline.app.state.evaluator
    before = evaluator.metrics.counters["signals_redelivered_total"]
    await produce(settings, settings.topic("order-signals.v1"), signals)

    async def dropped() -> bool:
        return bool(evaluator.metrics.counters["signals_redelivered_total"] - before >= len(path))

    assert await wait_for(dropped), "the evaluator did not see the redelivered signals"
    await asyncio.sleep(0.5)  # alerts go out within milliseconds of their batch landing
    again = await alerts_of(settings, order_id, "location_ban")
    assert by_episode(again) == by_episode(first)
    assert not any(a.late for a in again)
