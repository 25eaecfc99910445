"""Every role x every route x objects of the caller's own and of other regions and officers: the
answer is what the role may see, never another region's or officer's order, never a 5xx."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from services.adapters.settings import Settings
from tests.support.http import auth, body
from tests.support.orders import T0, at

pytestmark = pytest.mark.integration

# (role, sub, region) of every kind of caller, and None for no token at all
CALLERS: dict[str, tuple[str, str, str | None] | None] = {
    "anonymous": None,
    "cjib": ("cjib", "cjib-feed", None),
    "admin": ("admin", "root", None),
    "operator-own": ("operator", "op-1", "noord"),
    "operator-other": ("operator", "op-2", "zuid"),
    "probation-own": ("probation", "po-own", None),
    "probation-other": ("probation", "po-other", None),
    "victim-support": ("victim-support", "vs-1", "noord"),
}
# Who sees the order of region "noord" owned by officer "po-own", per route kind.
SEES_ORDER = {"cjib", "admin", "operator-own", "probation-own"}
MAY_READ = SEES_ORDER | {"operator-other", "probation-other"}
MAY_LOOKUP = {"admin", "operator-own", "operator-other"}
SEES_IN_LOOKUP = {"admin", "operator-own"}


@pytest.fixture(scope="module")
async def the_order(client: httpx.AsyncClient, migrated: Settings) -> dict[str, str]:
    order_id, victim = f"BB-{uuid.uuid4().hex[:10]}", f"V-{uuid.uuid4().hex[:8]}"
    raw = body(order_id, region="noord", probation_officer_id="po-own", protected_person=victim,
               contact_bans=[{"protected_person_id": victim, "min_distance_m": 500}],
               valid_from=T0 - 86400 * 400)  # fmt: skip
    answer = await client.post("/v1/protection-orders", json=raw, headers=auth(migrated, "cjib"))
    assert answer.status_code == 201
    return {"order_id": order_id, "victim": victim}


def _headers(settings: Settings, caller: str) -> dict[str, str]:
    spec = CALLERS[caller]
    return {} if spec is None else auth(settings, spec[0], spec[1], spec[2])


@pytest.mark.parametrize("caller", sorted(CALLERS))
async def test_every_route_answers_each_role_with_exactly_what_it_may_see(
    client: httpx.AsyncClient, migrated: Settings, the_order: dict[str, str], caller: str
) -> None:
    headers = _headers(migrated, caller)
    order_id, victim = the_order["order_id"], the_order["victim"]
    lat, lon = at(0, 0)
    answers: dict[str, httpx.Response] = {
        "post": await client.post(
            "/v1/protection-orders", json=body(f"BB-{uuid.uuid4().hex[:10]}"), headers=headers
        ),
        "get": await client.get(f"/v1/protection-orders/{order_id}", headers=headers),
        "by_person": await client.get(
            "/v1/protection-orders", params={"person_id": victim}, headers=headers
        ),
        "lookup_person": await client.get(
            "/v1/lookup", params={"person_id": victim}, headers=headers
        ),
        "lookup_place": await client.get(
            "/v1/lookup", params={"lat": lat, "lon": lon, "radius_m": 50}, headers=headers
        ),
    }
    assert all(a.status_code < 500 for a in answers.values()), {
        k: a.status_code for k, a in answers.items()
    }
    denied = 401 if caller == "anonymous" else 403
    expected_post = 201 if caller == "cjib" else denied
    assert answers["post"].status_code == expected_post

    if caller in MAY_READ:
        assert answers["get"].status_code == (200 if caller in SEES_ORDER else 404)
        listed = [o["order_id"] for o in answers["by_person"].json()]
        assert listed == ([order_id] if caller in SEES_ORDER else [])
    else:
        assert answers["get"].status_code == answers["by_person"].status_code == denied

    for route in ("lookup_person", "lookup_place"):
        answer = answers[route]
        if caller in MAY_LOOKUP:
            hits: list[dict[str, Any]] = answer.json()["hits"]
            visible = [h["order_id"] for h in hits if h["order_id"] == order_id]
            assert visible == ([order_id] if caller in SEES_IN_LOOKUP else []), route
        else:
            assert answer.status_code == denied, route
