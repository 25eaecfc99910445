"""Wire contracts of the Kafka topics, as msgspec Structs: the hot path decodes straight into them.

Field names and meanings are fixed by DESIGN.md. Decoding with `decode` either returns a valid
Struct or raises `ContractError` whose message names the field (`$.lat`) and the reason; decode
a record with nothing else, as some checks run after msgspec's (see `_HotId`). Checks that need
a clock (a `ts` in the future) are not here: they live in the core, where time is an argument.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta, Struct

Latitude = Annotated[float, Meta(ge=-90.0, le=90.0, description="WGS84 degrees")]
Longitude = Annotated[float, Meta(ge=-180.0, le=180.0, description="WGS84 degrees")]
AccuracyM = Annotated[
    float, Meta(gt=0.0, le=100_000.0, description="radius of the 68% disc, metres, > 0")
]
ID_PATTERN = r"^[A-Za-z0-9._:-]+$"
DeviceId = Annotated[str, Meta(min_length=1, max_length=64, pattern=ID_PATTERN)]
OrderId = Annotated[str, Meta(min_length=1, max_length=64, pattern=ID_PATTERN)]
# Postgres text cannot hold NUL and a control character in a name is never meant: refused at
# the edge (422 / DLQ naming the field) rather than failing the database write.
ONE_LINE = r"^[^\x00-\x1f\x7f]*$"
Name = Annotated[str, Meta(min_length=1, max_length=64, pattern=ONE_LINE)]
PersonId = Name
# The records of the hot path (positions, device events, routed signals: one or more per fix)
# state their id patterns in the schema only; `decode` checks them after msgspec, with one
# regex match over all the ids of a record. A regex search per field was 1.5 of the 2.1 µs of
# decoding a routed signal (now 1.3). Unlike a search, whose `$` also matches before a final
# newline, the match is whole.
_HotId = Annotated[
    str, Meta(min_length=1, max_length=64, extra_json_schema={"pattern": ID_PATTERN})
]
_HotName = Annotated[
    str, Meta(min_length=1, max_length=64, extra_json_schema={"pattern": ONE_LINE})
]
BatteryPct = Annotated[int, Meta(ge=0, le=100)]
UtcTime = Annotated[datetime, Meta(tz=True, description="RFC 3339, UTC with Z")]

PositionSource = Literal["gnss", "wifi", "cell"]
DeviceEventType = Literal[
    "strap_tamper", "case_tamper", "battery", "charging", "power_off", "power_on", "heartbeat"
]
Rule = Literal[
    "location_ban",
    "area_ban",
    "contact_ban",
    "presence_obligation",
    "signal_lost",
    "tamper",
    "battery_low",
]
Severity = Literal["warning", "breach", "critical"]
Certainty = Literal["certain", "possible"]
AlertStatus = Literal["open", "updated", "closed"]
DeviceRole = Literal["subject", "protected"]
OrderEventType = Literal["order.issued", "order.amended", "order.revoked"]
ZoneKind = Literal["location_ban", "area_ban", "presence_obligation"]
RiskLevel = Literal["low", "medium", "high"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WallClock = Annotated[str, Meta(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM")]


class ContractError(ValueError):
    """A record that breaks its contract; the message names the field and the reason."""


class Position(Struct, frozen=True):
    """`bw.positions.v1`, key `device_id`."""

    device_id: _HotId
    ts: UtcTime
    lat: Latitude
    lon: Longitude
    accuracy_m: AccuracyM
    source: PositionSource | None = None
    battery_pct: BatteryPct | None = None


class DeviceEvent(Struct, frozen=True):
    """`bw.device-events.v1`, key `device_id`."""

    device_id: _HotId
    ts: UtcTime
    type: DeviceEventType
    battery_pct: BatteryPct | None = None


class SignalSource(Struct, frozen=True):
    """Where a signal came from, so a dossier can point at the raw record."""

    topic: str
    partition: int
    offset: int


class OrderSignal(Struct, frozen=True):
    """`bw.order-signals.v1`, key `order_id`: one device's fix or event, re-keyed to one order.

    The router emits one signal per order a device belongs to, with the device's role in it,
    so that both devices of a contact ban meet in the partition of their order.
    """

    order_id: _HotId
    device_id: _HotId
    role: DeviceRole
    person_id: _HotName
    position: Position | None = None
    event: DeviceEvent | None = None
    source: SignalSource | None = None


# ---------------------------------------------------------------- orders


class ScheduleWindow(Struct, frozen=True, forbid_unknown_fields=True):
    days: Annotated[list[Weekday], Meta(min_length=1, max_length=7)]
    start: WallClock
    end: WallClock


class GeoJsonGeometry(Struct, frozen=True, forbid_unknown_fields=True):
    type: Literal["Point", "Polygon", "MultiPolygon"]
    coordinates: Any


class Zone(Struct, frozen=True, forbid_unknown_fields=True):
    zone_id: Name
    kind: ZoneKind
    label: Annotated[str, Meta(max_length=200, pattern=ONE_LINE)] = ""
    geometry: GeoJsonGeometry | None = None
    radius_m: Annotated[float, Meta(gt=0.0, le=50_000.0)] | None = None
    municipality_code: Annotated[str, Meta(pattern=r"^GM\d{4}$")] | None = None
    warning_buffer_m: Annotated[float, Meta(ge=0.0, le=50_000.0)] = 0.0
    schedule: list[ScheduleWindow] | None = None


class ContactBan(Struct, frozen=True, forbid_unknown_fields=True):
    protected_person_id: PersonId
    min_distance_m: Annotated[float, Meta(gt=0.0, le=100_000.0)]
    warning_distance_m: Annotated[float, Meta(ge=0.0, le=200_000.0)] | None = None


class Subject(Struct, frozen=True, forbid_unknown_fields=True):
    person_id: PersonId
    device_id: DeviceId | None = None


class ProtectedPerson(Struct, frozen=True, forbid_unknown_fields=True):
    person_id: PersonId
    device_id: DeviceId | None = None


class CaseOwner(Struct, frozen=True, forbid_unknown_fields=True):
    name: Annotated[str, Meta(max_length=200, pattern=ONE_LINE)]
    organisation: Annotated[str, Meta(max_length=200, pattern=ONE_LINE)] = ""
    phone: Annotated[str, Meta(max_length=50, pattern=ONE_LINE)] = ""


class Order(Struct, frozen=True, forbid_unknown_fields=True):
    order_id: OrderId
    version: Annotated[int, Meta(ge=1, le=2**31 - 1)]  # a Postgres integer
    valid_from: UtcTime
    subject: Subject
    region: Name
    probation_officer_id: Name
    valid_until: UtcTime | None = None
    protected_persons: list[ProtectedPerson] = msgspec.field(default_factory=list)
    risk_level: RiskLevel = "medium"
    case_owner: CaseOwner | None = None
    contact_bans: list[ContactBan] = msgspec.field(default_factory=list)
    zones: list[Zone] = msgspec.field(default_factory=list)


class OrderEvent(Struct, frozen=True, forbid_unknown_fields=True):
    """`POST /v1/protection-orders` body and the value on the CJIB and orders topics."""

    event_id: Name
    event_type: OrderEventType
    occurred_at: UtcTime
    order: Order


# ---------------------------------------------------------------- alerts and dead letters


class AlertPosition(Struct, frozen=True):
    lat: float
    lon: float
    accuracy_m: float
    ts: datetime


class Alert(Struct, frozen=True):
    """`bw.alerts.v1`, key `order_id`. One breach episode is one `alert_id`, its life a rising
    `seq`."""

    alert_id: str
    seq: Annotated[int, Meta(ge=0)]
    order_id: OrderId
    rule: Rule
    severity: Severity
    certainty: Certainty
    status: AlertStatus
    episode_started_at: datetime
    detected_at: datetime
    region: str
    probation_officer_id: str
    zone_id: str | None = None
    protected_person_id: str | None = None
    late: bool = False
    position: AlertPosition | None = None
    distance_m: float | None = None
    risk_level: RiskLevel = "medium"
    audience: Literal["all", "probation"] = "all"
    reason: str = ""


class DeadLetter(Struct, frozen=True):
    """`bw.dlq.v1`: the raw bytes, why they were refused, and where they came from."""

    raw_b64: str
    reason: str
    source_topic: str
    source_partition: int
    source_offset: int
    service: str
    failed_at: datetime
    key_b64: str | None = None


# ---------------------------------------------------------------- decoding

T = TypeVar("T")

_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}
_encoder = msgspec.json.Encoder()


def _decoder(kind: type[T]) -> msgspec.json.Decoder[T]:
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = msgspec.json.Decoder(kind)
        _decoders[kind] = decoder
    return decoder


def decode(kind: type[T], raw: bytes | str) -> T:
    """Decode one record of a contract, or raise ContractError naming the field and reason."""
    try:
        value = _decoder(kind).decode(raw)
    except msgspec.ValidationError as exc:
        raise ContractError(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise ContractError(f"not valid JSON: {exc}") from None
    kind_of_value = type(value)
    if kind_of_value is OrderSignal:
        _check_signal(value)  # type: ignore[arg-type]
    elif (kind_of_value is Position or kind_of_value is DeviceEvent) and not is_identifier(
        value.device_id  # type: ignore[attr-defined]
    ):
        _refuse_identifier("$.device_id")
    elif kind_of_value is OrderEvent and _may_end_a_string_with_newline(raw):
        _refuse_final_newline(value, "$")
    # (No finite check: an infinite accuracy_m, from 1e999, fails its range check already.)
    return value


# Whole-string matches: a search with `$` would also take a final newline.
_identifiers = re.compile(ID_PATTERN.removeprefix("^").removesuffix("$")).fullmatch
_control_character = re.compile(r"[\x00-\x1f\x7f]").search


def is_identifier(text: str) -> bool:
    """Matches `ID_PATTERN`, whole."""
    return _identifiers(text) is not None


def is_one_line(text: str) -> bool:
    """Matches `ONE_LINE` (whole): printable text has no control character, and other text is
    searched for one."""
    return text.isprintable() or _control_character(text) is None


def _refuse_identifier(path: str) -> None:
    raise ContractError(f"Expected `str` matching regex '{ID_PATTERN}' - at `{path}`")


# msgspec checks a pattern with a regex search, whose `$` also matches before a final newline:
# "BB-1\n" would pass as an order id. Every string of an order event has a pattern that refuses
# a newline anywhere else, so a final one is all that can slip through, and in JSON it is written
# as one of these just before the closing quote (the cheap test; the walk below is exact).
_ESCAPED_FINAL_NEWLINES = ('\\n"', '\\u000a"', '\\u000A"')
_ESCAPED_FINAL_NEWLINES_BYTES = tuple(end.encode() for end in _ESCAPED_FINAL_NEWLINES)


def _may_end_a_string_with_newline(raw: bytes | str) -> bool:
    if isinstance(raw, str):
        return any(end in raw for end in _ESCAPED_FINAL_NEWLINES)
    return any(end in raw for end in _ESCAPED_FINAL_NEWLINES_BYTES)


def _refuse_final_newline(value: object, path: str) -> None:
    if isinstance(value, str):
        if value.endswith("\n"):
            raise ContractError(f"Expected `str` without a final newline - at `{path}`")
    elif isinstance(value, Struct):
        for name in value.__struct_fields__:
            _refuse_final_newline(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list | tuple):
        for n, item in enumerate(value):
            _refuse_final_newline(item, f"{path}[{n}]")


def _check_signal(signal: OrderSignal) -> None:
    # One match over all ids at once and one isprintable: this runs for every routed signal.
    # Only a signal that fails them is looked at field by field, for the error to name it.
    inner = signal.position if signal.position is not None else signal.event
    ids = signal.order_id + signal.device_id + ("" if inner is None else inner.device_id)
    if _identifiers(ids) is None or not signal.person_id.isprintable():
        named = [("$.order_id", signal.order_id), ("$.device_id", signal.device_id)]
        if inner is not None:
            named.append(("$.position.device_id" if inner is signal.position
                          else "$.event.device_id", inner.device_id))  # fmt: skip
        for path, text in named:
            if not is_identifier(text):
                _refuse_identifier(path)
        if not is_one_line(signal.person_id):
            raise ContractError(f"Expected `str` matching regex '{ONE_LINE}' - at `$.person_id`")


def encode(value: Struct) -> bytes:
    return _encoder.encode(value)
