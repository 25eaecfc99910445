"""The one validation path of an order event, for the HTTP endpoint and the CJIB topic alike:
the wire contract (msgspec), then what a contract cannot say (dates, references, geometry)."""

from __future__ import annotations

import hashlib
import re

from geo.shapes import ZoneGeometryError
from schemas import wire
from services.core import CompiledOrder, compile_order

_UNKNOWN_FIELD = re.compile(r"unknown field `([^`]*)`")
_AT_FIELD = re.compile(r"^(?P<reason>.*?)(?: - at `\$(?P<field>[^`]*)`)?$", re.DOTALL)


class InvalidOrder(ValueError):
    """Refused input; `field` names the offending part, as a JSON path without the `$.`."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def _field_of(error: wire.ContractError) -> InvalidOrder:
    match = _AT_FIELD.match(str(error))
    assert match is not None
    field = (match["field"] or "").lstrip(".")
    unknown = _UNKNOWN_FIELD.search(match["reason"])
    if unknown:  # name the unknown field itself, not the object holding it
        field = f"{field}.{unknown[1]}".lstrip(".")
    return InvalidOrder(field or "body", match["reason"])


def content_hash(event: wire.OrderEvent) -> str:
    """What an event says (type and order), not its id or send time: a replay of the same version
    with the same content hashes the same."""
    return hashlib.sha256(event.event_type.encode() + b"|" + wire.encode(event.order)).hexdigest()


def parse_order_event(raw: bytes) -> tuple[wire.OrderEvent, CompiledOrder]:
    try:
        event = wire.decode(wire.OrderEvent, raw)
    except wire.ContractError as exc:
        raise _field_of(exc) from None
    order = event.order
    if order.valid_until is not None and order.valid_until <= order.valid_from:
        raise InvalidOrder("order.valid_until", "must be after valid_from")
    people = [p.person_id for p in order.protected_persons]
    for i, person in enumerate(people):
        if person in people[:i]:
            raise InvalidOrder(f"order.protected_persons[{i}].person_id", "named twice")
        if person == order.subject.person_id:
            raise InvalidOrder(
                f"order.protected_persons[{i}].person_id", "the subject cannot be protected"
            )
    for i, ban in enumerate(order.contact_bans):
        if ban.protected_person_id not in people:
            raise InvalidOrder(
                f"order.contact_bans[{i}].protected_person_id",
                "names no protected person of this order",
            )
        if ban.warning_distance_m is not None and ban.warning_distance_m < ban.min_distance_m:
            raise InvalidOrder(
                f"order.contact_bans[{i}].warning_distance_m", "must be at least min_distance_m"
            )
    zone_ids = [zone.zone_id for zone in order.zones]
    for i, zone_id in enumerate(zone_ids):
        if zone_id in zone_ids[:i]:
            raise InvalidOrder(f"order.zones[{i}].zone_id", "zone ids must be unique in an order")
    try:
        compiled = compile_order(event)
    except ZoneGeometryError as exc:
        raise InvalidOrder(exc.field, exc.reason) from None
    return event, compiled
