"""The simulator's scripts, run through the rules engine itself (no Kafka): every scripted
breach comes out, for its own order, not before its time, and nothing else does."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

import msgspec
import pytest

from schemas import wire
from services.core import DEFAULT_RULES, compile_order, evaluate, new_state, tick
from services.core.model import Fix, HealthEvent, Signal, SignalRejected
from simulator.script import RULES, Noise, Record, plan

START = 1_795_000_000.0  # a Monday morning, Nov 2026


def _signal(record: Record, role: str, person: str) -> Signal:
    value = record.value
    raw = msgspec.json.encode(value)  # through the wire contract, as the router reads it
    kind = wire.Position if record.topic == "positions.v1" else wire.DeviceEvent
    ts = wire.decode(kind, raw).ts.timestamp()  # type: ignore[attr-defined]
    if record.topic == "positions.v1":
        return Fix(device_id=value["device_id"], role=role, person_id=person, t=ts,  # type: ignore[arg-type]
                   lat=value["lat"], lon=value["lon"], accuracy_m=value["accuracy_m"],
                   battery_pct=value.get("battery_pct"))  # fmt: skip
    return HealthEvent(device_id=value["device_id"], role=role, person_id=person, t=ts,  # type: ignore[arg-type]
                       type=value["type"], battery_pct=value.get("battery_pct"))  # fmt: skip


@pytest.mark.parametrize("noise", [Noise(0, 0, 0), Noise()], ids=["clean", "noisy"])
def test_every_scripted_breach_comes_out_for_its_order_and_nothing_else(noise: Noise) -> None:
    scripted = plan(len(RULES) * 2, seed=7, start=START, noise=noise)
    orders = {
        e["order"]["order_id"]: compile_order(wire.decode(wire.OrderEvent, msgspec.json.encode(e)))
        for e in scripted.orders
    }
    devices = {}
    for event in scripted.orders:
        order = event["order"]
        devices[order["subject"]["device_id"]] = (order["order_id"], "subject",
                                                  order["subject"]["person_id"])  # fmt: skip
        for person in order["protected_persons"]:
            if person["device_id"]:
                devices[person["device_id"]] = (order["order_id"], "protected", person["person_id"])
    states = {order_id: new_state(order, START) for order_id, order in orders.items()}
    raised: dict[str, dict[str, float]] = defaultdict(dict)  # order -> rule -> first seconds

    def note(alerts: list[wire.Alert], at_s: float) -> None:
        for alert in alerts:
            raised[alert.order_id].setdefault(alert.rule, at_s)

    for record in scripted.records:
        order_id, role, person = devices[record.key]
        now = START + record.at_s
        try:
            states[order_id], alerts = evaluate(states[order_id], _signal(record, role, person),
                                                orders[order_id], now)  # fmt: skip
        except SignalRejected:
            continue
        note(alerts, record.at_s)
        for other, state in states.items():  # the evaluator ticks every order each second
            states[other], alerts = tick(state, orders[other], now)
            note(alerts, record.at_s)
    # the device that goes dark a third of the way is missed within the run
    assert scripted.duration_s / 3 + DEFAULT_RULES.signal_lost_after_s < scripted.duration_s

    for expected in scripted.expected:
        got = raised[expected.order_id]
        assert set(got) == {expected.rule}, (expected, got)
        assert got[expected.rule] >= expected.after_s, (expected, got)
    assert {e.rule for e in scripted.expected} == set(RULES)
    regions = {e["order"]["region"] for e in scripted.orders}
    assert len(regions) >= 5  # several control rooms
    assert any(z.get("municipality_code") for e in scripted.orders for z in e["order"]["zones"])


def test_a_plan_is_the_same_for_the_same_seed_and_differs_for_another() -> None:
    one, again, other = (plan(14, seed=s, start=START) for s in (3, 3, 4))
    assert one.records == again.records and one.orders == again.orders
    assert one.records != other.records


def test_noise_drops_duplicates_and_delays_fixes() -> None:
    clean = plan(14, seed=5, start=START, noise=Noise(0, 0, 0))
    noisy = plan(14, seed=5, start=START, noise=Noise(0.1, 0.1, 0.1))
    fixes = [r for r in noisy.records if r.topic == "positions.v1"]
    stamps = [(r.key, r.value["ts"]) for r in fixes]
    assert len(stamps) != len(set(stamps))  # some sent twice

    def sent_late(r: Record) -> bool:
        taken = datetime.fromisoformat(r.value["ts"].replace("Z", "+00:00")).timestamp()
        return r.at_s - (taken - START) > 1

    assert any(sent_late(r) for r in fixes)
    assert not any(sent_late(r) for r in clean.records)
    assert len({(r.key, r.value["ts"]) for r in clean.records if r.topic == "positions.v1"}) > len(
        set(stamps)
    )  # some never sent
