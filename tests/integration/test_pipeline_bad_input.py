"""10% malformed records mixed into the position stream: every one lands in the DLQ with a
reason, the alerts of the good records are identical to a clean run's, and nothing crashes."""

from __future__ import annotations

import asyncio
import base64
import random
from typing import Any

import msgspec
import pytest

from schemas import wire
from services.adapters.settings import Settings
from services.http import create_app
from tests.support.kafka import topic_values, wait_for
from tests.support.scenario import Stream, comparable, environment, produce, scenario

pytestmark = pytest.mark.integration

JUNK = [
    b"{not json",
    b"",
    b'{"device_id": "EB-1", "ts": "yesterday", "lat": 52, "lon": 5, "accuracy_m": 5}',
    b'{"device_id": "EB-1", "ts": "2026-11-23T10:00:00Z", "lat": 91, "lon": 5, "accuracy_m": 5}',
    b'{"device_id": "EB-1", "ts": "2026-11-23T10:00:00Z", "lat": 52, "lon": 5, "accuracy_m": -1}',
    b'{"device_id": "EB-1", "ts": "2026-11-23T10:00:00Z", "lat": "NaN", "lon": 5, "accuracy_m": 5}',
    b'{"device_id": "", "ts": "2026-11-23T10:00:00Z", "lat": 52, "lon": 5, "accuracy_m": 5}',
]


def device_streams(signals: Stream) -> tuple[Stream, Stream]:
    """The monitors' own records behind routed signals: (positions, device events), keyed by
    device, each record once (a device in two orders sends one fix, not two)."""
    positions: Stream = []
    events: Stream = []
    seen: set[bytes] = set()
    for _, value in signals:
        signal: dict[str, Any] = msgspec.json.decode(value)
        what = signal.get("position") or signal["event"]
        raw = msgspec.json.encode(what)
        if raw in seen:
            continue
        seen.add(raw)
        target = positions if "position" in signal else events
        target.append((what["device_id"].encode(), raw))
    return positions, events


async def run(base: Settings, positions: Stream, events: Stream, orders: Stream) -> tuple[
    list[wire.Alert], list[wire.DeadLetter]
]:  # fmt: skip
    async with environment(base) as settings:
        await produce(settings, settings.topic("protection-orders.v1"), orders)
        app = create_app(settings, services=("router", "evaluator"))
        async with app.router.lifespan_context(app):
            router, evaluator = app.state.router, app.state.evaluator
            await asyncio.wait_for(router.ready.wait(), 60)

            async def orders_known() -> bool:
                # Both must hold the orders first: a signal that overtakes its order on the
                # evaluator is dead-lettered (a known gap, noted on #6).
                held = sum(len(h.core.orders) for h in evaluator.held.values())
                return len(router.directory.versions) == held == len(orders)

            assert await wait_for(orders_known, timeout_s=60)
            await produce(settings, settings.topic("positions.v1"), positions)
            await produce(settings, settings.topic("device-events.v1"), events)
            total = len(positions) + len(events)

            async def drained() -> bool:
                routed = router.metrics.counters["records_total"]
                dead = router.metrics.counters["dead_letters_total"]
                unpublished = await _unpublished(app)
                return routed + dead >= total and unpublished == 0 and not evaluator_busy()

            def evaluator_busy() -> bool:
                evaluated: float = evaluator.metrics.counters["signals_total"]
                return bool(evaluated < router.metrics.counters["signals_total"])

            assert await wait_for(drained, timeout_s=120), "the pipeline did not drain"
            assert router.metrics.counters["restarts_total"] == 0, "the router crashed"
            assert evaluator.metrics.counters["restarts_total"] == 0, "the evaluator crashed"
        alerts = [wire.decode(wire.Alert, v)
                  for v in await topic_values(settings, settings.topic("alerts.v1"))]  # fmt: skip
        letters = [wire.decode(wire.DeadLetter, v)
                   for v in await topic_values(settings, settings.topic("dlq.v1"))]  # fmt: skip
    return alerts, letters


async def _unpublished(app: Any) -> int:
    from sqlalchemy import func, select

    from services.adapters.tables import alert_outbox

    async with app.state.sessions() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(alert_outbox)
            .where(alert_outbox.c.published_at.is_(None))
        )
    return int(count or 0)


@pytest.mark.timeout(600)
async def test_ten_percent_junk_changes_no_alert_and_all_of_it_is_dead_lettered(
    migrated: Settings,
) -> None:
    orders, signals = scenario(seed=23, orders_n=20, signals_n=3000)
    # Positions only: a tamper alert carries the subject's last fix, and device events come on
    # another topic, so which fix that is depends on how the router's fetches of the two topics
    # interleave - two clean runs differed there about one time in three. Junk in the position
    # stream is what this test is about.
    positions, _ = device_streams(signals)
    events: Stream = []
    rng = random.Random(5)
    junk = [(f"EB-JUNK-{n}".encode(), rng.choice(JUNK)) for n in range(len(positions) // 10)]
    dirty = list(positions)
    for record in junk:
        dirty.insert(rng.randrange(len(dirty) + 1), record)

    clean_alerts, clean_letters = await run(migrated, positions, events, orders)
    dirty_alerts, dirty_letters = await run(migrated, dirty, events, orders)

    # Contact bans are left out of the comparison: the subject's and the victim's fixes come
    # from different partitions of bw.positions.v1, the router interleaves them as the fetches
    # fall, and the core pairs each fix with the other device's latest one - so even two clean
    # runs may differ there. Every rule of one device must match exactly.
    clean, dirty_kept = (
        {k: v for k, v in comparable(run_alerts).items() if v[1] != "contact_ban"}
        for run_alerts in (clean_alerts, dirty_alerts)
    )
    assert len(clean) > 20, sorted({d.reason[:60] for d in clean_letters})
    assert dirty_kept == clean
    assert clean_letters == []
    lettered = sorted((base64.b64decode(d.key_b64 or ""), base64.b64decode(d.raw_b64))
                      for d in dirty_letters)  # fmt: skip
    assert lettered == sorted(junk), "every junk record once in the DLQ, nothing else"
    assert all(d.reason and d.service == "fix_router" for d in dirty_letters)
