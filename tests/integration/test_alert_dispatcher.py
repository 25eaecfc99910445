"""alert_dispatcher on real Kafka and Postgres: alerts taken in once whatever is replayed, the
alert API and its audit, escalation, referrals, victim reports."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from schemas import wire
from services.adapters.auth import Caller
from services.adapters.settings import Settings
from services.adapters.tables import alert_messages, audit_log, webhook_deliveries
from services.http import create_app
from tests.support.alerts import CASE_OWNER, alert, order_for_alerts, produce
from tests.support.http import auth
from tests.support.kafka import topic_values, wait_for

pytestmark = pytest.mark.integration
REGION, OTHER = "midden-nederland", "noord-holland"


@pytest.fixture(scope="module")
def dispatch_settings(migrated: Settings) -> Settings:
    """Short timers, so escalation is seen within seconds."""
    return migrated.model_copy(update={"dispatch": migrated.dispatch.model_copy(update={
        "escalate_after_s": 3.0, "escalate_after_high_risk_s": 1.5,
        "webhook_backoff_base_s": 0.5, "webhook_backoff_cap_s": 4.0,
    })})  # fmt: skip


@pytest.fixture(scope="module")
async def desk_app(dispatch_settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(dispatch_settings, services=("ingest", "dispatcher"))
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture(scope="module")
async def desk(desk_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=desk_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bw") as http:

        async def ready() -> bool:
            return (await http.get("/readyz")).status_code == 200

        assert await wait_for(ready, timeout_s=60), (await http.get("/readyz")).text
        yield http


def operator(settings: Settings, region: str = REGION) -> dict[str, str]:
    return auth(settings, "operator", "op-1", region)


async def listed(
    http: httpx.AsyncClient, settings: Settings, order_id: str, *, until: object = None
) -> list[dict[str, object]]:
    """The order's alerts as admin sees them, once `until(alerts)` holds (default: any)."""

    async def check() -> list[dict[str, object]]:
        answer = await http.get(f"/v1/alerts?order_id={order_id}", headers=auth(settings, "admin"))
        assert answer.status_code == 200, answer.text
        alerts: list[dict[str, object]] = answer.json()["alerts"]
        done = until(alerts) if callable(until) else bool(alerts)
        return alerts if done else []

    found: list[dict[str, object]] = await wait_for(check, timeout_s=20)
    assert found, f"the alerts of {order_id} never arrived as expected"
    return found


async def test_each_message_is_taken_in_once_and_malformed_ones_go_to_the_dlq(
    desk: httpx.AsyncClient, dispatch_settings: Settings
) -> None:
    s = dispatch_settings
    order_id = await order_for_alerts(desk, s)
    opened = alert(order_id, severity="warning")
    raised = alert(order_id, alert_id=opened.alert_id, seq=1, severity="breach", status="updated")
    junk = b'{"alert_id": "x", "seq": -1}'
    # the relay is at least once: seq 0 comes again after seq 1, and the junk in between
    await produce(s, [opened, raised, junk, opened, raised])
    alerts = await listed(desk, s, order_id, until=lambda a: a and a[0]["last_seq"] == 1)
    assert len(alerts) == 1
    (only,) = alerts
    assert (only["severity"], only["episode_status"], only["handling"]) == ("breach", "updated",
                                                                             "new")  # fmt: skip
    assert only["case_owner"] == CASE_OWNER
    engine = create_async_engine(s.database_url)
    try:
        async with engine.connect() as conn:
            stored = await conn.scalar(
                select(func.count()).where(alert_messages.c.alert_id == opened.alert_id)
            )
    finally:
        await engine.dispose()
    assert stored == 2

    async def dead() -> list[bytes]:
        letters = await topic_values(s, s.topic("dlq.v1"))
        return [v for v in letters if b'"service":"alert_dispatcher"' in v]

    assert await wait_for(dead), "the malformed alert never reached the DLQ"


async def test_acknowledge_assign_resolve_are_scoped_audited_and_final(
    desk: httpx.AsyncClient, dispatch_settings: Settings
) -> None:
    s = dispatch_settings
    order_id = await order_for_alerts(desk, s)
    breach = alert(order_id)
    await produce(s, [breach])
    await listed(desk, s, order_id)
    url = f"/v1/alerts/{breach.alert_id}"

    # another region's operator cannot see or touch it: 404, as if it did not exist
    assert (await desk.get(url, headers=operator(s, OTHER))).status_code == 404
    refused = await desk.post(f"{url}/acknowledge", json={}, headers=operator(s, OTHER))
    assert refused.status_code == 404

    acked = await desk.post(f"{url}/acknowledge", json={"notes": "calling"}, headers=operator(s))
    assert acked.status_code == 200, acked.text
    assert (acked.json()["handling"], acked.json()["acknowledged_by"]) == ("acknowledged", "op-1")
    assigned = await desk.post(f"{url}/assign", json={"assignee": "unit-7"}, headers=operator(s))
    assert assigned.json()["assigned_to"] == "unit-7"
    bad = await desk.post(f"{url}/resolve", json={"outcome": "shrug"}, headers=operator(s))
    assert (bad.status_code, bad.json()["field"]) == (422, "outcome")
    resolved = await desk.post(
        f"{url}/resolve", json={"outcome": "police_dispatched", "notes": "arrested"},
        headers=operator(s),
    )  # fmt: skip
    assert resolved.status_code == 200
    assert (resolved.json()["handling"], resolved.json()["outcome"]) == (
        "resolved", "police_dispatched")  # fmt: skip
    again = await desk.post(f"{url}/acknowledge", json={}, headers=operator(s))
    assert (again.status_code, again.json()["field"]) == (409, "alert_id")

    engine = create_async_engine(s.database_url)
    try:
        async with engine.connect() as conn:
            actions = (await conn.execute(
                select(audit_log.c.action, audit_log.c.actor).where(
                    audit_log.c.object == breach.alert_id).order_by(audit_log.c.id)
            )).all()  # fmt: skip
    finally:
        await engine.dispose()
    # refused attempts are audited too: the other region's, and the one after resolving
    assert [a for a, _ in actions if a != "read_alert"] == [
        "acknowledge_alert_refused",
        "acknowledge_alert",
        "assign_alert",
        "resolve_alert",
        "acknowledge_alert_refused",
    ]


async def test_an_unacknowledged_breach_escalates_and_an_acknowledged_one_does_not(
    desk: httpx.AsyncClient, desk_app: FastAPI, dispatch_settings: Settings
) -> None:
    s = dispatch_settings
    officer = f"po-esc-{time.time_ns() % 10**9}"
    order_id = await order_for_alerts(desk, s, risk_level="high", officer=officer)
    receiver = {"url": "http://127.0.0.1:9/x", "secret": "s" * 20, "probation_officer_id": officer}
    hook = await desk.post("/v1/webhooks", headers=auth(s, "probation", officer), json=receiver)
    ignored = alert(order_id, rule="location_ban", officer=officer)
    seen = alert(order_id, rule="area_ban", officer=officer)
    await produce(s, [ignored, seen])
    await listed(desk, s, order_id, until=lambda a: len(a) == 2)
    took = await desk.post(f"/v1/alerts/{seen.alert_id}/acknowledge", json={},
                           headers=operator(s))  # fmt: skip
    assert took.status_code == 200
    started = time.monotonic()
    alerts = await listed(desk, s, order_id, until=lambda a: any(x["escalated_at"] for x in a))
    waited = time.monotonic() - started
    by_id = {a["alert_id"]: a for a in alerts}
    assert by_id[ignored.alert_id]["severity"] == "critical"  # up from breach
    assert by_id[ignored.alert_id]["escalated_at"] is not None
    assert by_id[seen.alert_id]["escalated_at"] is None
    assert waited < 10, f"a high-risk breach escalated after {waited:.1f} s (configured 1.5 s)"
    await asyncio.sleep(1.0)  # the timer runs every second: the acknowledged one stays put
    again = await listed(desk, s, order_id)
    assert {a["alert_id"]: a["escalated_at"] for a in again}[seen.alert_id] is None

    # on the supervisor feed (what `/v1/alerts/stream?supervisor=true` serves), and only it
    supervisor = await desk_app.state.dispatch.feed(
        Caller("op-1", "operator", REGION), 0, region=None, supervisor=True
    )
    mine = [(event, p["alert_id"]) for _, event, p in supervisor if p.get("order_id") == order_id]
    assert mine == [("escalation", ignored.alert_id)]
    # and the officer is notified again, under a key of its own
    engine = create_async_engine(s.database_url)
    try:
        async with engine.connect() as conn:
            keys = set((await conn.execute(
                select(webhook_deliveries.c.idempotency_key).where(
                    webhook_deliveries.c.webhook_id == hook.json()["id"])
            )).scalars())  # fmt: skip
    finally:
        await engine.dispose()
    assert keys == {f"{ignored.alert_id}:0", f"{seen.alert_id}:0",
                    f"{ignored.alert_id}:0:escalated"}  # fmt: skip


async def test_three_breaches_in_a_week_open_one_referral_for_the_regions_victim_support(
    desk: httpx.AsyncClient, dispatch_settings: Settings
) -> None:
    s = dispatch_settings
    order_id = await order_for_alerts(desk, s)
    now = time.time()
    breaches = [alert(order_id, started=now - 3600 * h) for h in (30, 20, 10)]
    warning = alert(order_id, rule="area_ban", severity="warning")
    battery = alert(order_id, rule="battery_low", severity="warning")
    await produce(s, [breaches[0], warning, battery, breaches[1]])
    await listed(desk, s, order_id, until=lambda a: len(a) == 4)

    async def referrals(region: str) -> list[dict[str, object]]:
        answer = await desk.get("/v1/referrals",
                                headers=auth(s, "victim-support", "vs-1", region))  # fmt: skip
        assert answer.status_code == 200, answer.text
        return [r for r in answer.json() if r["order_id"] == order_id]

    assert await referrals(REGION) == []  # two breaches and two warnings are not three breaches
    await produce(s, [breaches[2], alert(order_id, started=now - 60)])

    async def opened() -> list[dict[str, object]]:
        return await referrals(REGION)

    found = await wait_for(opened)
    assert len(found) == 1, found  # the fourth breach does not open a second one
    assert await referrals(OTHER) == []
    assert (await desk.get("/v1/referrals", headers=operator(s))).status_code == 403


async def test_a_victim_reports_with_their_token_and_follows_it_through_the_status_link(
    desk: httpx.AsyncClient, dispatch_settings: Settings
) -> None:
    s = dispatch_settings
    order_id = await order_for_alerts(desk, s)
    other_order = await order_for_alerts(desk, s)
    support = auth(s, "victim-support", "vs-1", REGION)
    minted = await desk.post(f"/v1/protection-orders/{order_id}/victim-token", headers=support)
    assert minted.status_code == 200, minted.text
    victim = {"Authorization": f"Bearer {minted.json()['token']}"}
    report = {
        "order_id": order_id, "occurred_at": "2026-11-20T21:14:00Z", "channel": "message",
        "description": "Twelve messages on a new number saying he knows where I work.",
        "evidence": [{"kind": "screenshot", "sha256": "a" * 64, "size_bytes": 48213}],
    }  # fmt: skip
    # the victim's token is for their own order, and for nothing but filing reports
    wrong = await desk.post("/v1/victim-reports", json={**report, "order_id": other_order},
                            headers=victim)  # fmt: skip
    assert wrong.status_code == 404
    assert (await desk.get("/v1/alerts", headers=victim)).status_code == 401
    assert (await desk.get("/v1/victim-reports", headers=victim)).status_code == 401

    filed = await desk.post("/v1/victim-reports", json=report, headers=victim)
    assert filed.status_code == 201, filed.text
    report_id, status_url = filed.json()["report_id"], filed.json()["status_url"]
    status_path = httpx.URL(status_url).path

    # victim support moves it on; each step's explanation is what the victim reads
    step = f"/v1/victim-reports/{report_id}/status"
    skip = await desk.post(step, json={"status": "forwarded", "explanation": "x"}, headers=support)
    assert (skip.status_code, skip.json()["field"]) == (409, "status")
    for status, explanation in [
        ("assessed", "We have read your report and the screenshots."),
        ("forwarded", "Your report was sent to the public prosecutor on 21 November."),
    ]:
        moved = await desk.post(step, json={"status": status, "explanation": explanation},
                                headers=support)  # fmt: skip
        assert moved.status_code == 200, moved.text
    seen = (await desk.get(status_path)).json()
    assert seen["status"] == "forwarded"
    assert [h["status"] for h in seen["history"]] == ["received", "assessed", "forwarded"]
    assert "prosecutor" in seen["history"][-1]["explanation"]
    assert "description" not in seen and "order_id" not in seen  # the link shows the path only
    assert (await desk.get(status_path[:-3] + "xyz")).status_code == 404

    # the case's probation officer sees it, another officer and another region do not
    mine = await desk.get(f"/v1/victim-reports/{report_id}", headers=auth(s, "probation", "po-17"))
    assert mine.status_code == 200 and mine.json()["evidence"][0]["sha256"] == "a" * 64
    for outsider in (auth(s, "probation", "po-99"), auth(s, "victim-support", "vs-2", OTHER)):
        assert (await desk.get(f"/v1/victim-reports/{report_id}",
                               headers=outsider)).status_code == 404  # fmt: skip


async def test_victim_report_notifies_the_probation_officers_webhook(
    desk: httpx.AsyncClient, dispatch_settings: Settings
) -> None:
    s = dispatch_settings
    officer = f"po-{int(time.time() * 1000) % 10**8}"
    order_id = await order_for_alerts(desk, s, officer=officer)
    hook = await desk.post(
        "/v1/webhooks", headers=auth(s, "probation", officer),
        json={"url": "http://127.0.0.1:9/nowhere", "secret": "s" * 32,
              "probation_officer_id": officer},
    )  # fmt: skip
    assert hook.status_code == 201, hook.text
    others = await desk.post(
        "/v1/webhooks", headers=auth(s, "probation", officer),
        json={"url": "http://127.0.0.1:9/x", "secret": "s" * 32, "probation_officer_id": "po-1"},
    )  # fmt: skip
    assert (others.status_code, others.json()["field"]) == (409, "probation_officer_id")
    outside = await desk.post(
        "/v1/webhooks", headers=auth(s, "admin"),
        json={"url": "https://example.org/x", "secret": "s" * 32, "organisation": "X"},
    )  # fmt: skip
    assert (outside.status_code, outside.json()["field"]) == (409, "url")
    filed = await desk.post(
        "/v1/victim-reports", headers=auth(s, "victim-support", "vs-1", REGION),
        json={"order_id": order_id, "occurred_at": "2026-11-20T21:14:00Z", "channel": "call",
              "description": "He called from a hidden number."},
    )  # fmt: skip
    assert filed.status_code == 201, filed.text
    engine = create_async_engine(s.database_url)
    try:
        async with engine.connect() as conn:
            keys = (await conn.execute(
                select(webhook_deliveries.c.idempotency_key, webhook_deliveries.c.event).where(
                    webhook_deliveries.c.webhook_id == hook.json()["id"])
            )).all()  # fmt: skip
    finally:
        await engine.dispose()
    assert keys == [(f"report:{filed.json()['report_id']}:received", "victim_report")]


async def test_a_message_postgres_cannot_store_is_dead_lettered_and_its_batch_still_lands(
    desk: httpx.AsyncClient, dispatch_settings: Settings
) -> None:
    """A well-formed alert that the database refuses (a NUL in a name: Postgres text cannot
    hold it) must not block the alerts around it, nor be retried for ever."""
    s = dispatch_settings
    order_id = await order_for_alerts(desk, s)
    before, after = alert(order_id, rule="location_ban"), alert(order_id, rule="area_ban")
    poisoned = alert(order_id, rule="contact_ban")
    raw = wire.encode(poisoned).replace(b'"region":"midden-nederland"', b'"region":"mid\\u0000"')
    assert raw != wire.encode(poisoned)
    await produce(s, [before, raw, after])
    alerts = await listed(desk, s, order_id, until=lambda a: len(a) == 2)
    assert {a["alert_id"] for a in alerts} == {before.alert_id, after.alert_id}

    async def dead() -> list[dict[str, object]]:
        letters = [json.loads(v) for v in await topic_values(s, s.topic("dlq.v1"))]
        return [x for x in letters if base64.b64decode(str(x["raw_b64"])) == raw]

    (letter,) = await wait_for(dead)
    assert str(letter["reason"]).startswith("cannot be stored")
