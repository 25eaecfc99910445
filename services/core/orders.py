"""From the order contract to the engine's compiled view of it."""

from __future__ import annotations

import hashlib

import msgspec

from geo.shapes import ZoneGeometryError, compile_shape
from schemas.wire import OrderEvent, Zone
from services.core.model import CompiledContactBan, CompiledOrder, CompiledZone
from services.core.schedule import WeeklySchedule

_encoder = msgspec.json.Encoder(order="deterministic")


def fingerprint(value: msgspec.Struct) -> str:
    return hashlib.blake2b(_encoder.encode(value), digest_size=12).hexdigest()


def compile_zone(zone: Zone) -> CompiledZone:
    geometry = msgspec.to_builtins(zone.geometry) if zone.geometry is not None else None
    return CompiledZone(
        zone_id=zone.zone_id,
        kind=zone.kind,
        label=zone.label,
        shape=compile_shape(geometry, zone.radius_m, zone.municipality_code),
        warning_buffer_m=zone.warning_buffer_m,
        schedule=WeeklySchedule(zone.schedule) if zone.schedule else None,
        fingerprint=fingerprint(zone),
        episode_key=f"zone:{zone.zone_id}",
    )


def compile_order(event: OrderEvent) -> CompiledOrder:
    """Compile an order event; raises geo.shapes.ZoneGeometryError for a zone it cannot use."""
    order = event.order
    devices = {p.person_id: p.device_id for p in order.protected_persons}
    bans = tuple(
        CompiledContactBan(
            protected_person_id=ban.protected_person_id,
            protected_device_id=devices.get(ban.protected_person_id),
            min_distance_m=ban.min_distance_m,
            warning_distance_m=max(ban.warning_distance_m or 0.0, ban.min_distance_m),
            fingerprint=fingerprint(ban),
            episode_key=f"contact:{ban.protected_person_id}",
        )
        for ban in order.contact_bans
    )
    by_device: dict[str, list[CompiledContactBan]] = {}
    for ban in bans:
        if ban.protected_device_id is not None:
            by_device.setdefault(ban.protected_device_id, []).append(ban)
    return CompiledOrder(
        order_id=order.order_id,
        version=order.version,
        valid_from=order.valid_from.timestamp(),
        valid_until=order.valid_until.timestamp() if order.valid_until else None,
        revoked=event.event_type == "order.revoked",
        subject_person_id=order.subject.person_id,
        subject_device_id=order.subject.device_id,
        region=order.region,
        probation_officer_id=order.probation_officer_id,
        risk_level=order.risk_level,
        zones=_compile_zones(order.zones),
        contact_bans=bans,
        bans_by_protected_device={k: tuple(v) for k, v in by_device.items()},
    )


def _compile_zones(zones: list[Zone]) -> tuple[CompiledZone, ...]:
    compiled = []
    for i, zone in enumerate(zones):
        try:
            compiled.append(compile_zone(zone))
        except ZoneGeometryError as exc:  # name the zone, so a 422 points at it
            raise ZoneGeometryError(f"order.zones[{i}].{exc.field}", exc.reason) from None
    return tuple(compiled)
