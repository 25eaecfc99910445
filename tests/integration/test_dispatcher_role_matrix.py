"""Every route of the alert dispatcher x every kind of caller, over alerts, reports, referrals
and webhooks of two regions and two officers: each caller gets exactly what it may see, the
rest is 404 (as if it did not exist), 403 (the role may not) or 401 (no valid token)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from services.adapters.auth import Caller, mint_victim_token
from services.adapters.settings import Settings
from services.http import create_app
from tests.support.alerts import alert, order_for_alerts, produce
from tests.support.http import auth
from tests.support.kafka import wait_for

pytestmark = pytest.mark.integration

# (role, sub, region); None: no token; "victim": the victim token of order A
CALLERS: dict[str, tuple[str, str, str | None] | str | None] = {
    "anonymous": None,
    "victim-of-a": "victim",
    "cjib": ("cjib", "cjib-feed", None),
    "admin": ("admin", "root", None),
    "operator-noord": ("operator", "op-1", "noord"),
    "operator-zuid": ("operator", "op-2", "zuid"),
    "probation-a": ("probation", "po-a", None),
    "probation-b": ("probation", "po-b", None),
    "support-noord": ("victim-support", "vs-1", "noord"),
    "support-zuid": ("victim-support", "vs-2", "zuid"),
}


@dataclass
class World:
    http: httpx.AsyncClient
    app: Any
    settings: Settings
    orders: dict[str, str]  # "a" | "b" -> order id
    alerts: dict[str, str]  # "a-breach", "a-battery", "b-breach", "b-battery" -> alert id
    reports: dict[str, str]  # "a" | "b" -> report id
    hooks: dict[str, int]  # "a" | "b" -> webhook id


@pytest.fixture(scope="module")
async def world(migrated: Settings) -> AsyncIterator[World]:
    """Order A (noord, po-a) and order B (zuid, po-b), each with a control-room breach, a
    battery warning for probation only, a victim report, a referral and a webhook."""
    s = migrated
    app = create_app(s, services=("ingest", "dispatcher"))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bw") as http,
    ):
        orders, alerts, reports, hooks = {}, {}, {}, {}
        for name, region, officer in (("a", "noord", "po-a"), ("b", "zuid", "po-b")):
            order_id = await order_for_alerts(http, s, region=region, officer=officer)
            orders[name] = order_id
            now = time.time()
            breaches = [alert(order_id, region=region, officer=officer, started=now - n)
                        for n in range(3)]  # fmt: skip
            battery = alert(order_id, rule="battery_low", severity="warning", region=region,
                            officer=officer)  # fmt: skip
            await produce(s, [*breaches, battery])
            alerts[f"{name}-breach"], alerts[f"{name}-battery"] = (
                breaches[0].alert_id,
                battery.alert_id,
            )
            filed = await http.post("/v1/victim-reports", headers=auth(s, "admin"), json={
                "order_id": order_id, "occurred_at": "2026-11-20T10:00:00Z",
                "channel": "sighting", "description": "Seen at the school gate."})  # fmt: skip
            assert filed.status_code == 201, filed.text
            reports[name] = filed.json()["report_id"]
            hook = await http.post("/v1/webhooks", headers=auth(s, "admin"), json={
                "url": f"http://127.0.0.1:9/{name}", "secret": "x" * 20,
                "probation_officer_id": officer})  # fmt: skip
            hooks[name] = hook.json()["id"]

        async def all_in() -> bool:
            # Every alert listed, not only the referrals: three breaches make a referral before
            # the battery warning produced with them may have been taken in.
            referred = await http.get("/v1/referrals", headers=auth(s, "admin"))
            listed = await http.get("/v1/alerts?limit=1000", headers=auth(s, "admin"))
            referred_orders = {r["order_id"] for r in referred.json()}
            listed_alerts = {a["alert_id"] for a in listed.json()["alerts"]}
            return set(orders.values()) <= referred_orders and set(alerts.values()) <= listed_alerts

        assert await wait_for(all_in), "the alerts were not all taken in"
        yield World(http, app, s, orders, alerts, reports, hooks)


def headers(world: World, caller: str) -> dict[str, str]:
    spec = CALLERS[caller]
    if spec is None:
        return {}
    if spec == "victim":
        token, _ = mint_victim_token(world.settings, order_id=world.orders["a"], ttl_s=600)
        return {"Authorization": f"Bearer {token}"}
    assert isinstance(spec, tuple)
    return auth(world.settings, *spec)


# What each caller may see; any caller not named sees nothing of that kind.
SEES_ALERTS = {
    "admin": {"a-breach", "a-battery", "b-breach", "b-battery"},
    "operator-noord": {"a-breach"},  # the battery warning is for probation only
    "operator-zuid": {"b-breach"},
    "probation-a": {"a-breach", "a-battery"},
    "probation-b": {"b-breach", "b-battery"},
}
SEES_REPORTS = {"admin": {"a", "b"}, "support-noord": {"a"}, "support-zuid": {"b"},
                "probation-a": {"a"}, "probation-b": {"b"}}  # fmt: skip
MOVES_REPORTS = {"admin": {"a", "b"}, "support-noord": {"a"}, "support-zuid": {"b"}}
SEES_HOOKS = {"admin": {"a", "b"}, "probation-a": {"a"}, "probation-b": {"b"}}
MINTS_TOKEN_FOR = {"admin": {"a", "b"}, "support-noord": {"a"}, "support-zuid": {"b"}}
ALERT_ROLES = {"admin", "operator", "probation"}
REPORT_READERS = {"admin", "victim-support", "probation"}


def role_of(caller: str) -> str | None:
    spec = CALLERS[caller]
    return spec[0] if isinstance(spec, tuple) else None


def refusal(caller: str, roles: set[str]) -> int:
    """The answer to a caller outside the route: 401 without a valid token, 403 for a role
    the route does not take, 404 for an object the caller's role may not see."""
    role = role_of(caller)
    return 401 if role is None else 404 if role in roles else 403


@pytest.mark.parametrize("caller", sorted(CALLERS))
async def test_each_caller_sees_exactly_its_own(world: World, caller: str) -> None:
    http, h = world.http, headers(world, caller)

    listed = await http.get("/v1/alerts?limit=1000", headers=h)
    if role_of(caller) in ALERT_ROLES:
        mine = {a["alert_id"] for a in listed.json()["alerts"]}
        assert {k for k, v in world.alerts.items() if v in mine} == SEES_ALERTS.get(caller, set())
    else:
        assert listed.status_code == refusal(caller, ALERT_ROLES)
    for name, alert_id in world.alerts.items():
        allowed = name in SEES_ALERTS.get(caller, set())
        for method, path, payload in (
            ("GET", f"/v1/alerts/{alert_id}", None),
            ("GET", f"/v1/alerts/{alert_id}/dossier", None),
            ("GET", f"/v1/alerts/{alert_id}/map", None),
            ("POST", f"/v1/alerts/{alert_id}/assign", {"assignee": "unit-1"}),
        ):
            answer = await http.request(method, path, headers=h, json=payload)
            expected = 200 if allowed else refusal(caller, ALERT_ROLES)
            assert answer.status_code == expected, (method, path, answer.text)

    listed = await http.get("/v1/victim-reports", headers=h)
    if role_of(caller) in REPORT_READERS:
        mine = {r["report_id"] for r in listed.json()}
        assert {k for k, v in world.reports.items() if v in mine} == SEES_REPORTS.get(caller, set())
    else:
        assert listed.status_code == refusal(caller, REPORT_READERS)
    for name, report_id in world.reports.items():
        answer = await http.get(f"/v1/victim-reports/{report_id}", headers=h)
        sees = name in SEES_REPORTS.get(caller, set())
        assert answer.status_code == (200 if sees else refusal(caller, REPORT_READERS))
        moved = await http.post(f"/v1/victim-reports/{report_id}/status", headers=h,
                                json={"status": "assessed", "explanation": "read"})  # fmt: skip
        if name in MOVES_REPORTS.get(caller, set()):
            assert moved.status_code in (200, 409)  # 409: another allowed caller moved it first
        else:
            assert moved.status_code == refusal(caller, {"admin", "victim-support"})
        minted = await http.post(f"/v1/protection-orders/{world.orders[name]}/victim-token",
                                 headers=h)  # fmt: skip
        if name in MINTS_TOKEN_FOR.get(caller, set()):
            assert minted.status_code == 200
        else:
            assert minted.status_code == refusal(caller, {"admin", "victim-support"})

    referrals = await http.get("/v1/referrals", headers=h)
    if role_of(caller) in REPORT_READERS:
        mine = {r["order_id"] for r in referrals.json()}
        assert {k for k, v in world.orders.items() if v in mine} == SEES_REPORTS.get(caller, set())
    else:
        assert referrals.status_code == refusal(caller, REPORT_READERS)

    hooks = await http.get("/v1/webhooks", headers=h)
    if role_of(caller) in ("admin", "probation"):
        mine = {w["id"] for w in hooks.json()}
        assert {k for k, v in world.hooks.items() if v in mine} == SEES_HOOKS.get(caller, set())
    else:
        assert hooks.status_code == refusal(caller, {"admin", "probation"})
    dead = await http.get("/v1/webhooks/dead-letters", headers=h)
    assert dead.status_code == (200 if caller == "admin" else refusal(caller, {"admin"}))


@pytest.mark.parametrize("caller", sorted(c for c in CALLERS if role_of(c) in ALERT_ROLES))
async def test_the_live_feed_carries_exactly_what_the_caller_may_see(
    world: World, caller: str
) -> None:
    """The stream route serves `feed`; read from the start of time for the caller."""
    spec = CALLERS[caller]
    assert isinstance(spec, tuple)
    who = Caller(sub=spec[1], role=spec[0], region=spec[2])  # type: ignore[arg-type]
    events = await world.app.state.dispatch.feed(who, 0, region=None, supervisor=False)
    seen = {payload.get("alert_id") for _, event, payload in events if event == "alert"}
    assert {k for k, v in world.alerts.items() if v in seen} == SEES_ALERTS[caller]


async def test_a_victim_token_cannot_be_used_as_a_staff_token(world: World) -> None:
    victim = headers(world, "victim-of-a")
    answer = await world.http.get(f"/v1/protection-orders/{world.orders['a']}", headers=victim)
    assert answer.status_code == 401
    filed = await world.http.post("/v1/victim-reports", headers=victim, json={
        "order_id": world.orders["a"], "occurred_at": "2026-11-21T08:00:00Z",
        "channel": "message", "description": f"Another message {uuid.uuid4()}"})  # fmt: skip
    assert filed.status_code == 201
