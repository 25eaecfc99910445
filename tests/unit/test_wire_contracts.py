"""The wire contracts of DESIGN.md: good records decode, bad ones name the field and reason."""

from __future__ import annotations

import json
import re
from datetime import UTC
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas import api, wire
from schemas.wire import ContractError, decode

GOOD_POSITION: dict[str, Any] = {
    "device_id": "EB-1001",
    "ts": "2026-11-23T10:00:00Z",
    "lat": 52.09,
    "lon": 5.12,
    "accuracy_m": 8.0,
    "source": "gnss",
    "battery_pct": 80,
}


def test_good_position_decodes_to_utc() -> None:
    fix = decode(wire.Position, json.dumps(GOOD_POSITION))
    assert fix.device_id == "EB-1001"
    assert fix.ts.tzinfo is not None and fix.ts.utcoffset() == UTC.utcoffset(None)
    assert (fix.lat, fix.lon, fix.accuracy_m) == (52.09, 5.12, 8.0)


def test_optional_fields_may_be_absent() -> None:
    minimal = {k: GOOD_POSITION[k] for k in ("device_id", "ts", "lat", "lon", "accuracy_m")}
    fix = decode(wire.Position, json.dumps(minimal))
    assert fix.source is None and fix.battery_pct is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"lat": 90.5}, "$.lat"),
        ({"lon": -180.01}, "$.lon"),
        ({"accuracy_m": 0}, "$.accuracy_m"),
        ({"accuracy_m": -3}, "$.accuracy_m"),
        ({"ts": "yesterday"}, "$.ts"),
        ({"ts": "2026-11-23T10:00:00"}, "$.ts"),  # no time zone
        ({"lat": "52.1"}, "$.lat"),
        ({"device_id": ""}, "$.device_id"),
        ({"source": "bluetooth"}, "$.source"),
        ({"battery_pct": 101}, "$.battery_pct"),
    ],
)
def test_bad_position_names_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ContractError) as excinfo:
        decode(wire.Position, json.dumps({**GOOD_POSITION, **change}))
    assert field in str(excinfo.value)


@pytest.mark.parametrize("missing", ["device_id", "ts", "lat", "lon", "accuracy_m"])
def test_missing_required_field_is_named(missing: str) -> None:
    record = {k: v for k, v in GOOD_POSITION.items() if k != missing}
    with pytest.raises(ContractError, match=f"missing required field `{missing}`"):
        decode(wire.Position, json.dumps(record))


@pytest.mark.parametrize("raw", [b"", b"not json", b"{", b"\xff\xfe", b"[1,2]", b"null"])
def test_garbage_is_a_contract_error_not_a_crash(raw: bytes) -> None:
    with pytest.raises(ContractError):
        decode(wire.Position, raw)


def test_infinite_accuracy_is_refused() -> None:
    raw = json.dumps(GOOD_POSITION).replace('"accuracy_m": 8.0', '"accuracy_m": 1e999')
    with pytest.raises(ContractError):
        decode(wire.Position, raw)


def test_nan_literal_is_refused() -> None:
    raw = json.dumps(GOOD_POSITION).replace("52.09", "NaN")
    with pytest.raises(ContractError):
        decode(wire.Position, raw)


def test_device_event_types() -> None:
    event = decode(
        wire.DeviceEvent,
        b'{"device_id":"EB-1","ts":"2026-11-23T10:00:00Z","type":"strap_tamper"}',
    )
    assert event.type == "strap_tamper"
    with pytest.raises(ContractError, match=r"\$\.type"):
        decode(wire.DeviceEvent, b'{"device_id":"EB-1","ts":"2026-11-23T10:00:00Z","type":"x"}')


ORDER_EVENT: dict[str, Any] = {
    "event_id": "6d1f3c1e-0000-4000-8000-000000000001",
    "event_type": "order.issued",
    "occurred_at": "2026-11-23T10:00:00Z",
    "order": {
        "order_id": "BB-2026-000123",
        "version": 1,
        "valid_from": "2026-11-23T00:00:00Z",
        "valid_until": None,
        "subject": {"person_id": "P-1", "device_id": "EB-1001"},
        "protected_persons": [{"person_id": "V-1", "device_id": "VD-2001"}],
        "region": "midden-nederland",
        "probation_officer_id": "po-17",
        "risk_level": "high",
        "case_owner": {"name": "A. de Vries", "organisation": "OM", "phone": "+31 30 000 0000"},
        "contact_bans": [
            {"protected_person_id": "V-1", "min_distance_m": 500, "warning_distance_m": 1500}
        ],
        "zones": [
            {
                "zone_id": "z1",
                "kind": "location_ban",
                "label": "home of V-1",
                "geometry": {"type": "Point", "coordinates": [5.12, 52.09]},
                "radius_m": 200,
                "warning_buffer_m": 300,
                "schedule": [{"days": ["mon", "tue"], "start": "22:00", "end": "07:00"}],
            },
            {"zone_id": "z2", "kind": "area_ban", "municipality_code": "GM0344"},
        ],
    },
}


def test_order_event_decodes_on_both_paths() -> None:
    raw = json.dumps(ORDER_EVENT)
    on_wire = decode(wire.OrderEvent, raw)
    over_http = api.OrderEventIn.model_validate_json(raw)
    assert on_wire.order.order_id == over_http.order.order_id == "BB-2026-000123"
    assert on_wire.order.zones[1].municipality_code == over_http.order.zones[1].municipality_code


def _rejects_on_both(raw: str) -> tuple[str, str]:
    with pytest.raises(ContractError) as wire_error:
        decode(wire.OrderEvent, raw)
    with pytest.raises(ValidationError) as http_error:
        api.OrderEventIn.model_validate_json(raw)
    return str(wire_error.value), str(http_error.value)


def test_unknown_order_field_is_refused_on_both_paths() -> None:
    order = {**ORDER_EVENT["order"], "colour": "red"}
    wire_msg, http_msg = _rejects_on_both(json.dumps({**ORDER_EVENT, "order": order}))
    assert "colour" in wire_msg and "colour" in http_msg


def test_bad_schedule_time_is_refused_on_both_paths() -> None:
    zone = {**ORDER_EVENT["order"]["zones"][0]}
    zone["schedule"] = [{"days": ["mon"], "start": "24:00", "end": "07:00"}]
    order = {**ORDER_EVENT["order"], "zones": [zone]}
    wire_msg, http_msg = _rejects_on_both(json.dumps({**ORDER_EVENT, "order": order}))
    assert "start" in wire_msg and "start" in http_msg


def _order_with(path: tuple[Any, ...], value: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(json.dumps(ORDER_EVENT))
    node = event
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return event


@pytest.mark.parametrize(
    ("path", "named"),
    [
        (("event_id",), "$.event_id"),
        (("order", "order_id"), "$.order.order_id"),
        (("order", "subject", "device_id"), "$.order.subject.device_id"),
        (("order", "protected_persons", 0, "person_id"), "$.order.protected_persons[0].person_id"),
        (("order", "case_owner", "phone"), "$.order.case_owner.phone"),
        (("order", "zones", 0, "label"), "$.order.zones[0].label"),
        (("order", "zones", 0, "schedule", 0, "start"), "$.order.zones[0].schedule[0].start"),
    ],
)
@pytest.mark.parametrize("escape", ["\\n", "\\u000a", "\\u000A"])
def test_final_newline_is_refused_on_both_paths(
    path: tuple[Any, ...], named: str, escape: str
) -> None:
    """A regex search's `$` also matches before a final newline, so msgspec alone took
    "BB-1\\n" as an order id; the HTTP API never did."""
    valid = "22:00" if path[-1] == "start" else "x"
    raw = json.dumps(_order_with(path, "MARK")).replace('"MARK"', f'"{valid}{escape}"')
    wire_msg, _ = _rejects_on_both(raw)
    assert named in wire_msg and "final newline" in wire_msg


def test_a_backslash_and_n_at_the_end_is_not_a_newline() -> None:
    raw = json.dumps(_order_with(("order", "zones", 0, "label"), "C:\\n"))
    assert '\\\\n"' in raw  # what the quick test looks for, inside an escaped backslash
    assert decode(wire.OrderEvent, raw).order.zones[0].label == "C:\\n"


def test_http_order_zone_needs_exactly_one_shape() -> None:
    zone = {"zone_id": "z9", "kind": "area_ban"}
    order = {**ORDER_EVENT["order"], "zones": [zone]}
    with pytest.raises(ValueError, match="exactly one of geometry or municipality_code"):
        api.OrderEventIn.model_validate({**ORDER_EVENT, "order": order})


def _fields(schema: dict[str, Any], name: str) -> tuple[set[str], set[str]]:
    defs = schema.get("$defs", {})
    node = defs.get(name, schema)
    return set(node["properties"]), set(node.get("required", []))


@pytest.mark.parametrize(
    ("wire_name", "http_name"),
    [
        ("OrderEvent", "OrderEventIn"),
        ("Order", "OrderIn"),
        ("Zone", "ZoneIn"),
        ("ContactBan", "ContactBanIn"),
        ("ScheduleWindow", "ScheduleWindowIn"),
        ("Subject", "SubjectIn"),
        ("ProtectedPerson", "ProtectedPersonIn"),
        ("CaseOwner", "CaseOwnerIn"),
    ],
)
def test_http_and_wire_order_contracts_agree(wire_name: str, http_name: str) -> None:
    """The HTTP model and the Kafka Struct of the order event are the same contract."""
    import msgspec

    wire_schema = msgspec.json.schema(wire.OrderEvent)
    http_schema = api.OrderEventIn.model_json_schema()
    wire_props, wire_required = _fields(wire_schema, wire_name)
    http_props, http_required = _fields(http_schema, http_name)
    assert wire_props == http_props
    assert wire_required == http_required


# ------------------------------------------------------------- ids of the hot path records

# The oracle: each id field on its own against the contract's pattern, matched whole.
_ID_ORACLE = re.compile(r"\A[A-Za-z0-9._:-]+\Z")
_NAME_ORACLE = re.compile(r"\A[^\x00-\x1f\x7f]*\Z")
# Mostly valid characters, with some of everything else (controls, newlines, non-ASCII).
_id_text = st.text(
    alphabet=st.one_of(
        st.sampled_from("AZaz09._:-"), st.sampled_from(" \n\t\x00\x7f/é\u00a0\u2028"),
        st.characters(exclude_categories=["Cs"]),  # a lone surrogate is not UTF-8 at all
    ),
    min_size=1, max_size=12,
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(
    order_id=_id_text,
    device_id=_id_text,
    person_id=_id_text,
    inner_device_id=_id_text,
    inner=st.sampled_from(["position", "event", None]),
)
def test_signal_ids_are_refused_exactly_where_the_patterns_say(
    order_id: str, device_id: str, person_id: str, inner_device_id: str, inner: str | None
) -> None:
    """`decode` checks the ids of a routed signal without a regex per field: it refuses the same
    signals a per-field whole match of the contract's patterns does, naming the first bad one."""
    record: dict[str, Any] = {
        "order_id": order_id, "device_id": device_id, "role": "subject", "person_id": person_id,
    }  # fmt: skip
    if inner == "position":
        record["position"] = {**GOOD_POSITION, "device_id": inner_device_id}
    elif inner == "event":
        record["event"] = {"device_id": inner_device_id, "ts": "2026-11-23T10:00:00Z",
                           "type": "heartbeat"}  # fmt: skip
    named = [("$.order_id", order_id, _ID_ORACLE), ("$.device_id", device_id, _ID_ORACLE),
             ("$.person_id", person_id, _NAME_ORACLE)]  # fmt: skip
    if inner is not None:
        named.append((f"$.{inner}.device_id", inner_device_id, _ID_ORACLE))
    bad = [path for path, text, pattern in named if pattern.match(text) is None]
    if not bad:
        signal = decode(wire.OrderSignal, json.dumps(record))
        assert (signal.order_id, signal.device_id, signal.person_id) == (
            order_id, device_id, person_id,
        )  # fmt: skip
        return
    with pytest.raises(ContractError) as excinfo:
        decode(wire.OrderSignal, json.dumps(record))
    message = str(excinfo.value)
    assert any(f"`{path}`" in message for path in bad), message


@pytest.mark.parametrize("kind", [wire.Position, wire.DeviceEvent])
@pytest.mark.parametrize("device_id", ["EB 1", "EB-1\n", "EB/1", "é", "EB-1\x00"])
def test_position_and_event_device_ids_are_checked(kind: type[Any], device_id: str) -> None:
    record: dict[str, Any] = (
        {**GOOD_POSITION, "device_id": device_id} if kind is wire.Position
        else {"device_id": device_id, "ts": "2026-11-23T10:00:00Z", "type": "heartbeat"}
    )  # fmt: skip
    with pytest.raises(ContractError, match=r"`\$\.device_id`"):
        decode(kind, json.dumps(record))


def test_hot_path_schemas_still_state_the_id_patterns() -> None:
    import msgspec

    _, components = msgspec.json.schema_components([wire.OrderSignal])
    signal, position = components["OrderSignal"], components["Position"]
    for field in ("order_id", "device_id"):
        assert signal["properties"][field]["pattern"] == wire.ID_PATTERN
    assert signal["properties"]["person_id"]["pattern"] == wire.ONE_LINE
    assert position["properties"]["device_id"]["pattern"] == wire.ID_PATTERN
