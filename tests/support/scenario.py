"""A mixed scenario of orders and signals for the pipeline tests, and how to compare alerts of
two runs: orders with a location ban, an area ban and a contact ban; subjects wandering in and
out, victims moving, late fixes, teleport outliers, tamper events and low batteries."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import func, select

from deploy.scratch import scratch_database, scratch_topics
from schemas import wire
from services.adapters.database import migrate
from services.adapters.kafka import make_producer
from services.adapters.settings import Settings
from services.adapters.tables import alert_outbox
from services.http import create_app
from tests.support.kafka import topic_values, wait_for
from tests.support.orders import at, circle, order_event, square

ORDERS = 100
SIGNALS = 20_000
Stream = list[tuple[bytes, bytes]]  # (key, value) for bw.order-signals.v1


def utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{round(t % 1 * 1e6):06d}Z"


def scenario(seed: int, orders_n: int = ORDERS, signals_n: int = SIGNALS) -> tuple[Stream, Stream]:
    """Orders (location ban, area ban, contact ban) and a mixed stream of signals for them: each
    subject wanders in and out of its zones, victims move near and away, some fixes arrive late,
    some are teleport outliers, some are tamper events and low batteries."""
    rng = random.Random(seed)
    base = time.time() - 3 * 3600
    orders: Stream = []
    plans = []
    for n in range(orders_n):
        order_id = f"BB-CRASH-{seed}-{n:04d}"
        ox, oy = (n % 10) * 20_000.0, (n // 10) * 20_000.0  # orders far apart
        subject, victim = f"EB-{seed}-{n}", f"VD-{seed}-{n}"
        event = order_event(
            order_id=order_id, subject_device=subject, victim_device=victim,
            protected_person=f"V-{seed}-{n}", subject_person=f"P-{seed}-{n}",
            valid_from=base - 3600,
            zones=[circle("home", ox, oy, 200, warning_buffer_m=150),
                   square("street", ox + 1000, oy, 150)],
            contact_bans=[{"protected_person_id": f"V-{seed}-{n}", "min_distance_m": 300}],
        )  # fmt: skip
        orders.append((order_id.encode(), wire.encode(event)))
        plans.append((order_id, subject, victim, ox, oy))
    signals: Stream = []
    per_order = signals_n // orders_n
    for order_id, subject, victim, ox, oy in plans:
        t, x, y = base, ox - 1500.0, oy
        vx, vy = ox + 3000.0, oy + 500.0
        for k in range(per_order):
            t += rng.uniform(5, 20)
            kind = rng.random()
            if kind < 0.02:
                tamper = {"device_id": subject, "ts": utc(t), "type": "strap_tamper"}
                signals.append(_signal(order_id, subject, "subject", event=tamper))
                continue
            if kind < 0.25:  # the victim moves
                vx += rng.uniform(-150, 150)
                vy += rng.uniform(-150, 150)
                signals.append(_fix(order_id, victim, "protected", t, vx, vy, 10))
                continue
            # the subject heads for a target and overshoots: in and out of the zones
            target = ((ox, oy), (ox + 1000, oy), (vx, vy), (ox - 1500, oy))[k // 20 % 4]
            x += (target[0] - x) * 0.3 + rng.uniform(-40, 40)
            y += (target[1] - y) * 0.3 + rng.uniform(-40, 40)
            late = rng.random() < 0.03
            when = t - rng.uniform(60, 300) if late else t
            jump = 50_000 if rng.random() < 0.01 else 0
            battery = rng.choice([80, 14, 9]) if rng.random() < 0.05 else None
            signals.append(
                _fix(order_id, subject, "subject", when, x + jump, y, rng.uniform(4, 60), battery)
            )
    return orders, signals


def _fix(
    order_id: str, device: str, role: str, t: float, x: float, y: float, accuracy: float,
    battery: int | None = None,
) -> tuple[bytes, bytes]:  # fmt: skip
    lat, lon = at(x, y)
    lon = max(-180.0, min(180.0, lon))
    position: dict[str, Any] = {
        "device_id": device, "ts": utc(t), "lat": lat, "lon": lon, "accuracy_m": accuracy
    }  # fmt: skip
    if battery is not None:
        position["battery_pct"] = battery
    return _signal(order_id, device, role, position=position)


def _signal(order_id: str, device: str, role: str, **what: Any) -> tuple[bytes, bytes]:
    _, _, seed, n = order_id.split("-")  # BB-CRASH-<seed>-<n>, as scenario() names them
    person_id = f"{'P' if role == 'subject' else 'V'}-{seed}-{int(n)}"
    value = {"order_id": order_id, "device_id": device, "role": role, "person_id": person_id,
             **what}  # fmt: skip
    return order_id.encode(), msgspec.json.encode(value)


async def produce(settings: Settings, topic: str, records: Stream) -> None:
    producer = make_producer(settings, client_id="test-crash-load", linger_ms=5)
    await producer.start()
    try:
        acks = [await producer.send(topic, value, key=key) for key, value in records]
        await asyncio.gather(*acks)
    finally:
        await producer.stop()


@asynccontextmanager
async def environment(base: Settings) -> AsyncIterator[Settings]:
    async with scratch_database(base.database_url) as url:
        await migrate(url)
        async with scratch_topics(base.model_copy(update={"database_url": url})) as own:
            yield own.model_copy(update={"consumer_session_timeout_ms": 6000})


def comparable(alerts: list[Any]) -> dict[tuple[str, int], tuple[Any, ...]]:
    """Deduplicated by (alert_id, seq); `detected_at` is wall-clock and left out."""
    kept: dict[tuple[str, int], tuple[Any, ...]] = {}
    for a in alerts:
        kept.setdefault(
            (a.alert_id, a.seq),
            (a.order_id, a.rule, a.zone_id, a.severity, a.certainty, a.status,
             a.episode_started_at, a.late, a.position, a.distance_m),
        )  # fmt: skip
    return kept


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


def one_device_rules(alerts: list[Any]) -> dict[tuple[str, int], tuple[Any, ...]]:
    """`comparable`, without contact bans: the subject's and the victim's fixes come from
    different partitions of bw.positions.v1, the router interleaves them as its fetches fall,
    and the core pairs each fix with the other device's latest one - so even two clean runs
    may differ there. Every rule of one device must match exactly."""
    return {k: v for k, v in comparable(alerts).items() if v[1] != "contact_ban"}


@dataclass
class RunOutcome:
    alerts: list[wire.Alert]
    letters: list[wire.DeadLetter]
    restarts: int  # of the router and the evaluator together


async def run_router_and_evaluator(
    base: Settings, orders: Stream, positions: Stream,
    midway: Callable[[Any], Awaitable[None]] | None = None,
) -> RunOutcome:  # fmt: skip
    """Orders, then positions, through fix_router and breach_evaluator on a database and topics
    of their own, until every alert is published. The positions are produced in 30 slices, one
    after the other; `midway(app)`, if given, runs between two slices once a third of them are
    routed, so it meets services with work in hand and more to come."""
    async with environment(base) as settings:
        await produce(settings, settings.topic("protection-orders.v1"), orders)
        app = create_app(settings, services=("router", "evaluator"))
        async with app.router.lifespan_context(app):
            router, evaluator = app.state.router, app.state.evaluator
            await asyncio.wait_for(router.ready.wait(), 60)
            size = max(1, math.ceil(len(positions) / 30))
            for start in range(0, len(positions), size):
                await produce(
                    settings, settings.topic("positions.v1"), positions[start : start + size]
                )
                if (
                    midway is not None
                    and router.metrics.counters["records_total"] >= len(positions) / 3
                ):
                    await midway(app)
                    midway = None
            if midway is not None:
                await midway(app)

            async def drained() -> bool:
                routed = router.metrics.counters["records_total"]
                dead = router.metrics.counters["dead_letters_total"]
                evaluated = evaluator.metrics.counters["signals_total"]
                busy = evaluated < router.metrics.counters["signals_total"]
                return routed + dead >= len(positions) and not busy and not await _unpublished(app)

            drained_in_time = await wait_for(drained, timeout_s=180)
            assert drained_in_time, (
                "the pipeline did not drain: "
                f"routed {router.metrics.counters['records_total']:.0f} of {len(positions)}, "
                f"signals {router.metrics.counters['signals_total']:.0f} routed, "
                f"{evaluator.metrics.counters['signals_total']:.0f} evaluated, "
                f"{await _unpublished(app)} alerts unpublished, restarts: router "
                f"{router.metrics.counters['restarts_total']:.0f}, evaluator "
                f"{evaluator.metrics.counters['restarts_total']:.0f}"
            )
            restarts = sum(
                int(service.metrics.counters["restarts_total"]) for service in (router, evaluator)
            )
        alerts = [wire.decode(wire.Alert, v)
                  for v in await topic_values(settings, settings.topic("alerts.v1"))]  # fmt: skip
        letters = [wire.decode(wire.DeadLetter, v)
                   for v in await topic_values(settings, settings.topic("dlq.v1"))]  # fmt: skip
    return RunOutcome(alerts, letters, restarts)


async def _unpublished(app: Any) -> int:
    async with app.state.sessions() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(alert_outbox)
            .where(alert_outbox.c.published_at.is_(None))
        )
    return int(count or 0)
