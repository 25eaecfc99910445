"""The breach dossier end to end: an order over HTTP, a walk through a polygon area ban on
Kafka, the evaluator's alert taken in by the dispatcher, and the dossier built from the
fixes on `bw.order-signals.v1`: complete, hashed, frozen once closed, audited, scoped."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from services.adapters.settings import Settings
from services.adapters.tables import audit_log
from tests.support.http import auth
from tests.support.kafka import wait_for
from tests.support.orders import square
from tests.support.pipeline import (
    Pipeline,
    device_event,
    issue,
    new_device,
    position,
    running_pipeline,
)
from tests.support.scenario import produce

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def pipeline(migrated: Settings) -> AsyncIterator[Pipeline]:
    services = ("ingest", "router", "evaluator", "dispatcher")
    async with running_pipeline(migrated, services=services) as running:
        yield running


async def test_a_closed_breach_has_a_complete_frozen_dossier_for_its_owner_only(
    pipeline: Pipeline,
) -> None:
    s, http = pipeline.settings, pipeline.http
    device = new_device()
    park = square("park", 0, 0, 150)
    order_id = await issue(pipeline, device, contact_bans=[], zones=[park])
    start = time.time() - 600
    key = device.encode()
    path = [(-1000, 0), (-500, 0), (0, 0), (50, 0), (-500, 0), (-1000, 0), (-1000, 0), (-1000, 0)]
    fixes = [(key, position(device, start + n * 60, x, y)) for n, (x, y) in enumerate(path)]
    await produce(s, s.topic("positions.v1"), fixes)
    heartbeat = device_event(device, start + 150, "heartbeat", battery_pct=64)
    await produce(s, s.topic("device-events.v1"), [(key, heartbeat)])
    owner = auth(s, "probation", "po-17")

    async def closed() -> list[dict[str, Any]]:
        answer = await http.get(f"/v1/alerts?order_id={order_id}", headers=owner)
        alerts = [a for a in answer.json()["alerts"] if a["rule"] == "area_ban"]
        return alerts if alerts and alerts[0]["episode_status"] == "closed" else []

    (breach,) = await wait_for(closed, timeout_s=30)
    url = f"/v1/alerts/{breach['alert_id']}/dossier"

    first = await http.get(f"{url}?reason=sanction%20request", headers=owner)
    assert first.status_code == 200, first.text
    dossier = first.json()
    evidence = dossier["evidence"]
    assert dossier["frozen"] is True
    assert evidence["signals_complete"] is True
    assert [f["lat"] for f in evidence["fixes"]] == [
        json.loads(value)["lat"] for _, value in fixes
    ]  # every fix of the walk, in time order, with its accuracy and its raw record
    assert {f["accuracy_m"] for f in evidence["fixes"]} == {5.0}
    assert all(f["source"]["topic"] == s.topic("positions.v1") for f in evidence["fixes"])
    assert [(e["type"], e["battery_pct"]) for e in evidence["device_events"]] == [("heartbeat", 64)]
    assert evidence["order"]["version"] == 1 and evidence["order"]["order_id"] == order_id
    assert evidence["zone"]["zone_id"] == "park"
    assert evidence["zone"]["geometry"] == park["geometry"]
    assert [m["status"] for m in evidence["messages"]] == ["open", "closed"]
    canonical = json.dumps(evidence, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert dossier["content_hash"] == hashlib.sha256(canonical.encode()).hexdigest()

    # frozen: a later read gives the same evidence and hash, however the topic changes
    await produce(s, s.topic("positions.v1"), [(key, position(device, start + 330, 0, 0))])
    again = (await http.get(url, headers=auth(s, "admin"))).json()
    assert (again["content_hash"], again["evidence"]) == (dossier["content_hash"], evidence)

    page = await http.get(f"{url}?format=html", headers=owner)
    assert page.headers["content-type"].startswith("text/html")
    assert dossier["content_hash"] in page.text and f"Fixes ({len(path)};" in page.text

    for outsider in (auth(s, "probation", "po-99"), auth(s, "operator", "op-9", "zeeland")):
        assert (await http.get(url, headers=outsider)).status_code == 404
    assert (await http.get(url, headers=auth(s, "victim-support", "vs", "midden-nederland"))
            ).status_code == 403  # fmt: skip

    layers = (await http.get(f"/v1/alerts/{breach['alert_id']}/map", headers=owner)).json()
    assert [f["properties"]["zone_id"] for f in layers["zones"]["features"]] == ["park"]
    assert len(layers["track"]) == len(path) + 1  # the walk and the fix added since

    engine = create_async_engine(s.database_url)
    try:
        async with engine.connect() as conn:
            reads = await conn.scalar(
                select(func.count()).where(
                    audit_log.c.action == "read_dossier", audit_log.c.object == breach["alert_id"]
                )
            )
    finally:
        await engine.dispose()
    assert reads == 5  # owner twice (json, html), admin, and the two outsiders refused
