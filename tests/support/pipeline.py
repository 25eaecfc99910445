"""Every service in one process, as `breachwatch serve all` runs them, for end-to-end tests:
orders over HTTP, signals through Kafka, alerts read back from `bw.alerts.v1`."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
from fastapi import FastAPI

from schemas import wire
from services.adapters.settings import Settings
from services.http import create_app
from simulator.script import Plan
from tests.support.http import auth, body, new_order_id
from tests.support.kafka import topic_values, wait_for
from tests.support.orders import at
from tests.support.scenario import utc

Records = list[tuple[bytes, bytes]]


@dataclass
class Pipeline:
    http: httpx.AsyncClient
    app: FastAPI
    settings: Settings


@asynccontextmanager
async def running_pipeline(
    settings: Settings, services: tuple[str, ...] = ("ingest", "router", "evaluator")
) -> AsyncIterator[Pipeline]:
    app = create_app(settings, services=services)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bw") as http,
    ):

        async def ready() -> bool:
            return (await http.get("/readyz")).status_code == 200

        assert await wait_for(ready, timeout_s=60), (await http.get("/readyz")).text
        yield Pipeline(http, app, settings)


def new_device(prefix: str = "EB") -> str:
    return f"{prefix}-{new_order_id()[3:]}"


def position(device: str, t: float, x: float, y: float, accuracy_m: float = 5.0) -> bytes:
    lat, lon = at(x, y)
    return msgspec.json.encode(
        {"device_id": device, "ts": utc(t), "lat": lat, "lon": lon, "accuracy_m": accuracy_m}
    )


def device_event(device: str, t: float, kind: str, battery_pct: int | None = None) -> bytes:
    raw: dict[str, Any] = {"device_id": device, "ts": utc(t), "type": kind}
    if battery_pct is not None:
        raw["battery_pct"] = battery_pct
    return msgspec.json.encode(raw)


async def issue(pipeline: Pipeline, device: str, **order: Any) -> str:
    """An order for `device` issued over HTTP; returns once fix_router routes for it."""
    order_id = new_order_id()
    order.setdefault("valid_from", time.time() - 3600)
    raw = body(order_id, subject_device=device, **order)
    answer = await pipeline.http.post(
        "/v1/protection-orders", json=raw, headers=auth(pipeline.settings, "cjib")
    )
    assert answer.status_code == 201, answer.text

    async def routed() -> bool:  # fix_router reads the orders topic as it comes
        directory = pipeline.app.state.router.directory
        return order_id in {m.order_id for m in directory.orders_of(device)}

    assert await wait_for(routed), "fix_router never learnt the order"
    return order_id


async def alerts_of(
    settings: Settings, order_id: str, rule: str, *, until: Any = None, timeout_s: float = 30
) -> list[wire.Alert]:
    """The alerts of one rule of one order, once `until(alerts)` holds (default: any)."""

    async def found() -> list[wire.Alert]:
        raw = await topic_values(settings, settings.topic("alerts.v1"), order_id)
        alerts = [a for a in (wire.decode(wire.Alert, value) for value in raw) if a.rule == rule]
        done = until(alerts) if until is not None else bool(alerts)
        return alerts if done else []

    alerts: list[wire.Alert] = await wait_for(found, timeout_s=timeout_s)
    assert alerts, f"no {rule} alert for {order_id} within {timeout_s} s"
    return alerts


def walk_in(device: str, start: float) -> Records:
    """From 2 km west of the zone's centre to its middle, a fix every 5 s."""
    steps = [(-2000, 0), (-1000, 0), (-500, 0), (0, 0), (10, 0), (20, 0)]
    key = device.encode()
    return [(key, position(device, start + n * 5, x, y)) for n, (x, y) in enumerate(steps)]


def by_episode(alerts: list[wire.Alert]) -> dict[str, list[tuple[int, str]]]:
    """alert_id -> [(seq, status)], deduplicated (the relay publishes at least once)."""
    episodes: dict[str, set[tuple[int, str]]] = {}
    for a in alerts:
        episodes.setdefault(a.alert_id, set()).add((a.seq, a.status))
    return {alert_id: sorted(steps) for alert_id, steps in episodes.items()}


def routed(pipeline: Pipeline, scripted: Plan) -> Callable[[], Awaitable[bool]]:
    """Whether fix_router knows every order of the plan: other ingest instances of the test
    run share the CJIB consumer group, and its rebalances can delay an order by seconds."""
    wanted = {event["order"]["order_id"] for event in scripted.orders}

    async def known() -> bool:
        return wanted <= set(pipeline.app.state.router.directory.versions)

    return known
