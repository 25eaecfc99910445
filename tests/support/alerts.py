"""Alerts for the dispatcher's tests: messages of `bw.alerts.v1` built and produced directly,
so the dispatcher is tested on its own input without driving the evaluator."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from schemas import wire
from services.adapters.kafka import make_producer
from services.adapters.settings import Settings
from tests.support.http import auth, body, new_order_id
from tests.support.orders import at

CASE_OWNER = {"name": "Sanne de Vries", "organisation": "Veilig Thuis Utrecht",
              "phone": "+31 30 000 0000"}  # fmt: skip


def alert(
    order_id: str,
    *,
    seq: int = 0,
    alert_id: str | None = None,
    rule: str = "location_ban",
    severity: str = "breach",
    status: str = "open",
    region: str = "midden-nederland",
    officer: str = "po-17",
    risk_level: str = "medium",
    zone_id: str | None = "home",
    started: float | None = None,
) -> wire.Alert:
    started = time.time() if started is None else started
    raw: dict[str, Any] = {
        "alert_id": alert_id or str(uuid.uuid5(uuid.NAMESPACE_URL, f"{order_id}/{rule}/{started}")),
        "seq": seq, "order_id": order_id, "rule": rule, "severity": severity,
        "certainty": "certain", "status": status,
        "episode_started_at": datetime.fromtimestamp(started, UTC),
        "detected_at": datetime.fromtimestamp(time.time(), UTC),
        "region": region, "probation_officer_id": officer,
        "zone_id": zone_id if rule in ("location_ban", "area_ban", "presence_obligation") else None,
        "protected_person_id": "V-1" if rule == "contact_ban" else None,
        "position": wire.AlertPosition(*at(0, 0), accuracy_m=6.0,
                                       ts=datetime.fromtimestamp(time.time(), UTC)),
        "distance_m": -120.0, "risk_level": risk_level,
        "audience": "probation" if rule == "battery_low" else "all",
    }  # fmt: skip
    return wire.Alert(**raw)


async def produce(settings: Settings, values: Sequence[wire.Alert | bytes]) -> None:
    """Onto `bw.alerts.v1`, keyed by order as the relay does; raw bytes go as they are."""
    producer = make_producer(settings, client_id="test-alerts")
    await producer.start()
    try:
        for value in values:
            if isinstance(value, bytes):
                await producer.send_and_wait(settings.topic("alerts.v1"), value, key=b"junk")
            else:
                await producer.send_and_wait(
                    settings.topic("alerts.v1"), wire.encode(value), key=value.order_id.encode()
                )
    finally:
        await producer.stop()


async def order_for_alerts(
    http: httpx.AsyncClient,
    settings: Settings,
    *,
    region: str = "midden-nederland",
    officer: str = "po-17",
    risk_level: str = "medium",
) -> str:
    """An order (over HTTP) whose alerts the tests then produce."""
    order_id = new_order_id()
    raw = body(order_id, region=region, probation_officer_id=officer, risk_level=risk_level,
               case_owner=CASE_OWNER, valid_from=time.time() - 3600,
               subject_device=f"EB-{order_id[3:]}", victim_device=f"VD-{order_id[3:]}")  # fmt: skip
    answer = await http.post("/v1/protection-orders", json=raw, headers=auth(settings, "cjib"))
    assert answer.status_code == 201, answer.text
    return order_id
