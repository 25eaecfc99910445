"""Building orders and signals for core tests, in a local metric frame around a reference point."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from geo.projection import LocalPlane
from schemas import wire
from schemas.wire import DeviceRole
from services.core import Fix, HealthEvent, compile_order
from services.core.model import CompiledOrder

ORIGIN = LocalPlane.at(52.0907, 5.1214)  # Utrecht, Domplein
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC).timestamp()


def at(x: float, y: float) -> tuple[float, float]:
    """(lat, lon) of a point x metres east and y metres north of the origin."""
    return ORIGIN.to_latlon(x, y)


def circle(zone_id: str, x: float, y: float, radius: float, **extra: Any) -> dict[str, Any]:
    lat, lon = at(x, y)
    return {
        "zone_id": zone_id,
        "kind": extra.pop("kind", "location_ban"),
        "geometry": {"type": "Point", "coordinates": [lon, lat]},
        "radius_m": radius,
        **extra,
    }


def square(zone_id: str, x: float, y: float, half: float, **extra: Any) -> dict[str, Any]:
    corners = [
        (x - half, y - half),
        (x + half, y - half),
        (x + half, y + half),
        (x - half, y + half),
    ]
    ring = [list(reversed(at(cx, cy))) for cx, cy in corners]
    ring.append(ring[0])
    return {
        "zone_id": zone_id,
        "kind": extra.pop("kind", "area_ban"),
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        **extra,
    }


def order_event(
    *,
    zones: list[dict[str, Any]] | None = None,
    contact_bans: list[dict[str, Any]] | None = None,
    version: int = 1,
    event_type: str = "order.issued",
    valid_from: float = T0 - 86400,
    valid_until: float | None = None,
    order_id: str = "BB-2026-000123",
    victim_device: str | None = "VD-2001",
    subject_device: str = "EB-1001",
    region: str = "midden-nederland",
    probation_officer_id: str = "po-17",
    protected_person: str = "V-1",
    subject_person: str = "P-1",
    risk_level: str = "medium",
    case_owner: dict[str, str] | None = None,
    protected_persons: list[dict[str, Any]] | None = None,  # instead of the one victim above
) -> wire.OrderEvent:
    def iso(t: float) -> str:
        return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")

    raw = {
        "event_id": f"{order_id}-v{version}-{event_type}",
        "event_type": event_type,
        "occurred_at": iso(valid_from),
        "order": {
            "order_id": order_id,
            "version": version,
            "valid_from": iso(valid_from),
            "valid_until": iso(valid_until) if valid_until is not None else None,
            "subject": {"person_id": subject_person, "device_id": subject_device},
            "protected_persons": protected_persons
            or [{"person_id": protected_person, "device_id": victim_device}],
            "region": region,
            "probation_officer_id": probation_officer_id,
            "contact_bans": contact_bans or [],
            "zones": zones or [],
            "risk_level": risk_level,
            "case_owner": case_owner,
        },
    }
    return wire.decode(wire.OrderEvent, msgspec.json.encode(raw))


def compiled(**kwargs: Any) -> CompiledOrder:
    return compile_order(order_event(**kwargs))


def fix(
    x: float, y: float, t: float, accuracy: float = 5.0, *, device: str = "EB-1001", **kw: Any
) -> Fix:
    lat, lon = at(x, y)
    role: DeviceRole = "subject" if device.startswith("EB") else "protected"
    person = "P-1" if role == "subject" else "V-1"
    return Fix(
        device_id=device, role=role, person_id=person, t=t, lat=lat, lon=lon,
        accuracy_m=accuracy, **kw,
    )  # fmt: skip


def event(kind: str, t: float, device: str = "EB-1001", battery: int | None = None) -> HealthEvent:
    return HealthEvent(
        device_id=device, role="subject", person_id="P-1", t=t, type=kind,  # type: ignore[arg-type]
        battery_pct=battery,
    )  # fmt: skip
