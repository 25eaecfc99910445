"""The streaming spine on the real broker and database: orders over HTTP, fixes through Kafka,
fix_router and breach_evaluator in between, alerts on `bw.alerts.v1`; bad records in the DLQ."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import pytest
from fastapi import FastAPI

from schemas import wire
from services.adapters.settings import Settings
from services.http import create_app
from tests.support.http import auth, body, new_order_id
from tests.support.kafka import topic_values, wait_for
from tests.support.orders import at, circle
from tests.support.scenario import produce, utc

pytestmark = pytest.mark.integration


@dataclass
class Pipeline:
    http: httpx.AsyncClient
    app: FastAPI
    settings: Settings


@pytest.fixture(scope="module")
async def pipeline(migrated: Settings) -> AsyncIterator[Pipeline]:
    """Every service in one process, as `breachwatch serve all` runs them."""
    app = create_app(migrated, services=("ingest", "router", "evaluator"))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bw") as http,
    ):

        async def ready() -> bool:
            return (await http.get("/readyz")).status_code == 200

        assert await wait_for(ready, timeout_s=60), (await http.get("/readyz")).text
        yield Pipeline(http, app, migrated)


def position(device: str, t: float, x: float, y: float, accuracy_m: float = 5.0) -> bytes:
    lat, lon = at(x, y)
    return msgspec.json.encode(
        {"device_id": device, "ts": utc(t), "lat": lat, "lon": lon, "accuracy_m": accuracy_m}
    )


async def issue(pipeline: Pipeline, device: str, **order: Any) -> str:
    order_id = new_order_id()
    raw = body(order_id, valid_from=time.time() - 3600, subject_device=device, **order)
    answer = await pipeline.http.post(
        "/v1/protection-orders", json=raw, headers=auth(pipeline.settings, "cjib")
    )
    assert answer.status_code == 201, answer.text

    async def routed() -> bool:  # fix_router reads the orders topic as it comes
        directory = pipeline.app.state.router.directory
        return order_id in {m.order_id for m in directory.orders_of(device)}

    assert await wait_for(routed), "fix_router never learnt the order"
    return order_id


async def alerts_of(settings: Settings, order_id: str, rule: str) -> list[wire.Alert]:
    async def found() -> list[wire.Alert]:
        raw = await topic_values(settings, settings.topic("alerts.v1"), order_id)
        alerts = [wire.decode(wire.Alert, value) for value in raw]
        return alerts if any(a.rule == rule for a in alerts) else []

    return [a for a in await wait_for(found, timeout_s=30) if a.rule == rule]


def walk_in(device: str, start: float) -> list[tuple[bytes, bytes]]:
    """From 2 km west of the zone's centre to its middle, a fix every 5 s."""
    steps = [(-2000, 0), (-1000, 0), (-500, 0), (0, 0), (10, 0), (20, 0)]
    key = device.encode()
    return [(key, position(device, start + n * 5, x, y)) for n, (x, y) in enumerate(steps)]


async def test_a_subject_entering_a_location_ban_raises_one_alert_on_the_topic(
    pipeline: Pipeline,
) -> None:
    device = f"EB-{new_order_id()[3:]}"
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
    device = f"EB-{new_order_id()[3:]}"
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
        raw = await topic_values(pipeline.settings, pipeline.settings.topic("dlq.v1"))
        letters = [wire.decode(wire.DeadLetter, value) for value in raw]
        mine = [d for d in letters if d.key_b64 and base64.b64decode(d.key_b64) == key]
        return mine if len(mine) >= len(bad) else []

    letters = await wait_for(lettered, timeout_s=30)
    assert sorted(base64.b64decode(d.raw_b64) for d in letters) == sorted(v for _, v in bad)
    reasons = " | ".join(d.reason for d in letters)
    assert "lat" in reasons and "accuracy_m" in reasons, reasons
    assert {d.service for d in letters} == {"fix_router"}
    assert {d.source_topic for d in letters} == {pipeline.settings.topic("positions.v1")}
