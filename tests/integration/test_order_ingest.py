"""Order ingestion on the real PostgreSQL and Kafka: HTTP answers, lifecycle on the orders topic,
the CJIB topic with its DLQ, the control-room lookup and the audit chain."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from schemas import wire
from services.adapters.audit import verify
from services.adapters.auth import mint_token
from services.adapters.database import make_engine, make_sessionmaker
from services.adapters.kafka import make_producer
from services.adapters.settings import Settings
from tests.support.http import auth, body, new_order_id
from tests.support.kafka import topic_values, wait_for
from tests.support.orders import T0, at

pytestmark = pytest.mark.integration
REGION, OTHER_REGION = "midden-nederland", "oost-nederland"


# ---------------------------------------------------------------- ingestion


async def test_issue_amend_revoke_reach_the_orders_topic_in_order(
    client: httpx.AsyncClient, migrated: Settings
) -> None:
    order_id = new_order_id()
    cjib = auth(migrated, "cjib")
    for version, kind in ((1, "order.issued"), (2, "order.amended"), (3, "order.revoked")):
        answer = await client.post(
            "/v1/protection-orders", json=body(order_id, version, kind), headers=cjib
        )
        assert answer.status_code == 201, answer.text
        assert answer.json()["version"] == version

    async def published() -> list[wire.OrderEvent]:
        raw = await topic_values(migrated, migrated.topic("protection-orders.v1"), order_id)
        events = [wire.decode(wire.OrderEvent, value) for value in raw]
        return events if len(events) >= 3 else []

    events = await wait_for(published)
    assert [(e.event_type, e.order.version) for e in events] == [
        ("order.issued", 1),
        ("order.amended", 2),
        ("order.revoked", 3),
    ]


async def test_replays_get_the_same_answer_and_conflicts_get_409(
    client: httpx.AsyncClient, migrated: Settings
) -> None:
    order_id = new_order_id()
    cjib = auth(migrated, "cjib")
    first = body(order_id)
    created = await client.post("/v1/protection-orders", json=first, headers=cjib)
    replay = await client.post("/v1/protection-orders", json=first, headers=cjib)
    assert created.status_code == replay.status_code == 201
    assert replay.json() == created.json()

    other_content = body(order_id)
    other_content["order"]["risk_level"] = "high"
    reused_id = await client.post("/v1/protection-orders", json=other_content, headers=cjib)
    assert (reused_id.status_code, reused_id.json()["field"]) == (409, "event_id")

    other_content["event_id"] = f"{order_id}-other"
    same_version = await client.post("/v1/protection-orders", json=other_content, headers=cjib)
    assert (same_version.status_code, same_version.json()["field"]) == (409, "order.version")

    assert (await client.post("/v1/protection-orders", json=body(order_id, 2, "order.amended"),
                              headers=cjib)).status_code == 201  # fmt: skip
    stale = body(order_id, 1, "order.amended")
    stale["event_id"] = f"{order_id}-stale"
    answer = await client.post("/v1/protection-orders", json=stale, headers=cjib)
    assert (answer.status_code, answer.json()["field"]) == (409, "order.version")

    unknown = await client.post(
        "/v1/protection-orders", json=body(new_order_id(), 2, "order.amended"), headers=cjib
    )
    assert (unknown.status_code, unknown.json()["field"]) == (409, "event_type")


def _ring(points: Sequence[tuple[float, float]]) -> list[list[float]]:
    return [[lon, lat] for lat, lon in (at(x, y) for x, y in points)]


BOWTIE = _ring([(0, 0), (100, 100), (100, 0), (0, 100), (0, 0)])
UNCLOSED = _ring([(0, 0), (100, 0), (100, 100), (0, 100)])
FLAT = _ring([(0, 0), (100, 0), (200, 0), (0, 0)])
HUGE = _ring([(i % 100, i // 100) for i in range(10_001)] + [(0, 0)])


def _zone(**zone: Any) -> dict[str, Any]:
    return {"zone_id": "z", "kind": "area_ban", **zone}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"zones": [_zone(geometry={"type": "Polygon", "coordinates": [BOWTIE]})]},
         "order.zones[0].geometry.coordinates"),
        ({"zones": [_zone(geometry={"type": "Polygon", "coordinates": [UNCLOSED]})]},
         "order.zones[0].geometry.coordinates[0]"),
        ({"zones": [_zone(geometry={"type": "Polygon", "coordinates": [FLAT]})]},
         "order.zones[0].geometry.coordinates"),
        ({"zones": [_zone(geometry={"type": "Polygon", "coordinates": [HUGE]})]},
         "order.zones[0].geometry.coordinates"),
        ({"zones": [_zone(municipality_code="GM9999")]}, "order.zones[0].municipality_code"),
        ({"zones": [_zone(geometry={"type": "Point", "coordinates": [5.1, 52.1]}, radius_m=0)]},
         "order.zones[0].radius_m"),
        ({"zones": [_zone(geometry={"type": "Point", "coordinates": [5.1, 52.1]},
                          radius_m=1e7)]}, "order.zones[0].radius_m"),
        ({"valid_until": "2026-11-20T00:00:00Z"}, "order.valid_until"),
        ({"contact_bans": [{"protected_person_id": "NOBODY", "min_distance_m": 100}]},
         "order.contact_bans[0].protected_person_id"),
        # Found by schemathesis: each of these reached Postgres and came back as a 503.
        ({"version": 2**31}, "order.version"),
        ({"region": "midden\x00nederland"}, "order.region"),
        ({"subject": {"person_id": "P\x001"}}, "order.subject.person_id"),
    ],
)  # fmt: skip
async def test_invalid_orders_are_422_naming_the_field(
    client: httpx.AsyncClient, migrated: Settings, change: dict[str, Any], field: str
) -> None:
    raw = body(new_order_id())
    raw["order"].update(change)
    answer = await client.post("/v1/protection-orders", json=raw, headers=auth(migrated, "cjib"))
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field


async def test_unknown_fields_oversized_bodies_and_bad_tokens(
    client: httpx.AsyncClient, migrated: Settings
) -> None:
    raw = body(new_order_id())
    raw["order"]["colour"] = "red"
    answer = await client.post("/v1/protection-orders", json=raw, headers=auth(migrated, "cjib"))
    assert (answer.status_code, answer.json()["field"]) == (422, "order.colour")
    huge = b"{" + b" " * (migrated.max_body_bytes + 1) + b"}"
    answer = await client.post(
        "/v1/protection-orders", content=huge, headers=auth(migrated, "cjib")
    )
    assert answer.status_code == 413
    assert (await client.post("/v1/protection-orders", json=raw)).status_code == 401
    other_key = migrated.model_copy(
        update={"jwt_secret": SecretStr("another-key-of-thirty-two-bytes-or-more")}
    )
    forged = {"Authorization": "Bearer " + mint_token(other_key, role="cjib", sub="x")}
    assert (await client.post("/v1/protection-orders", json=raw, headers=forged)).status_code == 401
    operator = auth(migrated, "operator", region=REGION)
    assert (
        await client.post("/v1/protection-orders", json=raw, headers=operator)
    ).status_code == 403


async def test_the_cjib_topic_stores_good_records_and_dead_letters_bad_ones(
    client: httpx.AsyncClient, migrated: Settings
) -> None:
    good_id, bad_id = new_order_id(), new_order_id()
    bad = body(bad_id)
    bad["order"]["valid_until"] = "2026-11-20T00:00:00Z"  # before valid_from
    producer = make_producer(migrated, client_id="test-cjib")
    await producer.start()
    try:
        for value in (b"not json", json.dumps(bad).encode(), json.dumps(body(good_id)).encode()):
            await producer.send_and_wait(migrated.cjib_orders_topic, value, key=b"k")
    finally:
        await producer.stop()
    admin = auth(migrated, "admin")

    async def stored() -> bool:
        answer = await client.get(f"/v1/protection-orders/{good_id}", headers=admin)
        return answer.status_code == 200

    assert await wait_for(stored)

    async def letters() -> list[wire.DeadLetter]:
        raw = await topic_values(migrated, migrated.topic("dlq.v1"))
        found = [wire.decode(wire.DeadLetter, v) for v in raw]
        mine = [d for d in found if d.source_topic == migrated.cjib_orders_topic]
        return mine if len(mine) >= 2 else []

    dead = await wait_for(letters)
    reasons = sorted(d.reason for d in dead)
    assert any(r.startswith("422 body: not valid JSON") for r in reasons), reasons
    assert any(r.startswith("422 order.valid_until") for r in reasons), reasons
    assert (await client.get(f"/v1/protection-orders/{bad_id}", headers=admin)).status_code == 404


# ---------------------------------------------------------------- lookup and audit


async def _audit_rows(settings: Settings) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(settings.database_url.replace("+asyncpg", ""))
    try:
        rows: list[asyncpg.Record] = await conn.fetch("SELECT * FROM audit_log ORDER BY id")
        return rows
    finally:
        await conn.close()


async def test_lookup_by_person_and_place_own_region_unless_emergency(
    client: httpx.AsyncClient, migrated: Settings
) -> None:
    order_id, victim = new_order_id(), f"V-{uuid.uuid4().hex[:8]}"
    issued = body(order_id, region=OTHER_REGION, protected_person=victim,
                  contact_bans=[{"protected_person_id": victim, "min_distance_m": 500}],
                  valid_from=T0 - 86400 * 400)  # fmt: skip
    assert (await client.post("/v1/protection-orders", json=issued,
                              headers=auth(migrated, "cjib"))).status_code == 201  # fmt: skip
    own = auth(migrated, "operator", "op-1", REGION)
    theirs = auth(migrated, "operator", "op-2", OTHER_REGION)
    before = len(await _audit_rows(migrated))

    mine = await client.get("/v1/lookup", params={"person_id": victim}, headers=own)
    assert mine.status_code == 200 and mine.json()["hits"] == []
    found = await client.get("/v1/lookup", params={"person_id": victim}, headers=theirs)
    assert [(h["order_id"], h["matched_by"]) for h in found.json()["hits"]] == [
        (order_id, ["protected_person"])
    ]
    assert found.json()["hits"][0]["forbids"]["zones"][0]["zone_id"] == "home"
    no_reason = await client.get(
        "/v1/lookup", params={"person_id": victim, "emergency": "true"}, headers=own
    )
    assert (no_reason.status_code, no_reason.json()["field"]) == (422, "reason")
    misspelt = await client.get(
        "/v1/lookup", params={"person_id": victim, "emergncy": "true", "reason": "r"}, headers=own
    )  # silently ignoring it would run an ordinary, own-region lookup
    assert (misspelt.status_code, misspelt.json()["field"]) == (422, "emergncy")
    nul = await client.get("/v1/lookup", params={"person_id": "V\x00"}, headers=own)
    assert (nul.status_code, nul.json()["field"]) == (422, "person_id")
    emergency = await client.get(
        "/v1/lookup",
        params={"person_id": victim, "emergency": "true", "reason": "112 call, victim on line"},
        headers=own,
    )
    assert [h["order_id"] for h in emergency.json()["hits"]] == [order_id]

    lat, lon = at(150, 0)  # inside the 200 m home zone
    near = await client.get("/v1/lookup", params={"lat": lat, "lon": lon, "radius_m": 10},
                            headers=theirs)  # fmt: skip
    assert [h["matched_by"] for h in near.json()["hits"] if h["order_id"] == order_id] == [
        ["zone:home"]
    ]
    far_lat, far_lon = at(5000, 0)
    far = await client.get("/v1/lookup", params={"lat": far_lat, "lon": far_lon, "radius_m": 100},
                           headers=theirs)  # fmt: skip
    assert order_id not in [h["order_id"] for h in far.json()["hits"]]

    rows = (await _audit_rows(migrated))[before:]
    assert [(r["action"], r["actor"], r["emergency"]) for r in rows] == [
        ("lookup", "op-1", False),
        ("lookup", "op-2", False),
        ("lookup", "op-1", True),
        ("lookup", "op-2", False),
        ("lookup", "op-2", False),
    ]  # one row per lookup; the refused one (422) read nothing and wrote nothing
    assert rows[2]["reason"] == "112 call, victim on line"
    assert all(str(lat)[:6] not in r["object"] for r in rows)  # no coordinates in the log


async def test_audit_rows_cannot_be_changed_and_tampering_is_detected(
    client: httpx.AsyncClient, migrated: Settings
) -> None:
    order_id = new_order_id()
    await client.post("/v1/protection-orders", json=body(order_id), headers=auth(migrated, "cjib"))
    admin = auth(migrated, "admin", "auditor")
    before = len(await _audit_rows(migrated))
    assert (await client.get(f"/v1/protection-orders/{order_id}", headers=admin)).status_code == 200
    rows = await _audit_rows(migrated)
    assert len(rows) == before + 1 and rows[-1]["object"] == order_id
    engine = make_engine(migrated, pool_size=1)
    try:
        assert (await verify(make_sessionmaker(engine))).intact
        conn = await asyncpg.connect(migrated.database_url.replace("+asyncpg", ""))
        try:
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await conn.execute(
                    "UPDATE audit_log SET reason = 'x' WHERE id = $1", rows[-1]["id"]
                )
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await conn.execute("DELETE FROM audit_log WHERE id = $1", rows[-1]["id"])
            # Someone with the table owner's rights goes around the trigger.
            await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_delete")
            await conn.execute(
                "UPDATE audit_log SET actor = 'nobody' WHERE id = $1", rows[-1]["id"]
            )
            await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update_delete")
        finally:
            await conn.close()
        report = await verify(make_sessionmaker(engine))
        assert (report.intact, report.broken_at) == (False, rows[-1]["id"])
    finally:
        await engine.dispose()
