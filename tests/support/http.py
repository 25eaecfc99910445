"""HTTP helpers for tests: tokens and order event bodies."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from services.adapters.auth import mint_token
from services.adapters.settings import Settings
from tests.support.orders import circle, order_event


def auth(
    settings: Settings, role: str, sub: str = "someone", region: str | None = None
) -> dict[str, str]:
    token = mint_token(settings, role=role, sub=sub, region=region)  # type: ignore[arg-type]
    return {"Authorization": f"Bearer {token}"}


def new_order_id() -> str:
    return f"BB-{uuid.uuid4().hex[:10]}"


def body(
    order_id: str, version: int = 1, event_type: str = "order.issued", **kw: Any
) -> dict[str, Any]:
    kw.setdefault("zones", [circle("home", 0, 0, 200, warning_buffer_m=300)])
    kw.setdefault("contact_bans", [{"protected_person_id": "V-1", "min_distance_m": 500}])
    event = order_event(order_id=order_id, version=version, event_type=event_type, **kw)
    raw: dict[str, Any] = msgspec.to_builtins(event)
    return raw
