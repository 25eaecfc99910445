"""Scenarios of every rule of the core, each worked out by hand."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.wire import Alert
from services.core import (
    DEFAULT_RULES,
    SignalRejected,
    apply_order,
    copy_state,
    engine,
    evaluate,
    new_state,
    tick,
)
from services.core.model import CompiledOrder, OrderState, Signal
from tests.support.orders import T0, circle, compiled, event, fix, square


def run(
    order: CompiledOrder, signals: list[Signal], state: OrderState | None = None
) -> list[Alert]:
    """Feed signals in order, each evaluated at a wall clock equal to its own time."""
    state = state or new_state(order, T0 - 3600)
    alerts: list[Alert] = []
    for signal in signals:
        state, out = evaluate(state, signal, order, now=signal.t)
        alerts += out
    return alerts


def brief(alerts: list[Alert]) -> list[tuple[str, int, str, str, str]]:
    return [(a.rule, a.seq, a.status, a.severity, a.certainty) for a in alerts]


BAN = circle("z1", 0, 0, 200)


def test_certain_breach_alerts_at_once_and_closes_after_hysteresis() -> None:
    order = compiled(zones=[BAN])
    alerts = run(order, [
        fix(1000, 0, T0 - 60),     # far away (a plausible 16 m/s from here to the next fix)
        fix(50, 0, T0 + 10),       # the whole disc inside: breach at once
        fix(60, 0, T0 + 20),       # still inside: nothing new
        fix(1000, 0, T0 + 30),     # clearly outside ...
        fix(1000, 0, T0 + 100),    # ... for 70 s: still open
        fix(1000, 0, T0 + 150),    # ... for 120 s: closed
    ])  # fmt: skip
    assert brief(alerts) == [
        ("location_ban", 0, "open", "breach", "certain"),
        ("location_ban", 1, "closed", "breach", "certain"),
    ]
    assert alerts[0].alert_id == alerts[1].alert_id
    assert alerts[0].distance_m == pytest.approx(-150, abs=1)
    assert alerts[0].zone_id == "z1"
    assert alerts[0].episode_started_at == datetime.fromtimestamp(T0 + 10, UTC)


def test_possible_breach_waits_for_dwell() -> None:
    order = compiled(zones=[BAN])
    # 20 m accuracy at 210 m from the centre: the disc straddles the 200 m edge.
    alerts = run(order, [fix(210, 0, T0, 20), fix(212, 0, T0 + 10, 20)])
    assert brief(alerts) == [("location_ban", 0, "open", "breach", "possible")]
    assert alerts[0].episode_started_at == datetime.fromtimestamp(T0, UTC)
    # One possible fix alone, then away: nothing at all.
    assert run(order, [fix(210, 0, T0, 20), fix(900, 0, T0 + 10, 20)]) == []


def test_possible_breach_dwell_by_time() -> None:
    order = compiled(zones=[BAN])
    # A single straddling fix, then the next one 61 s later still straddling: dwell by time.
    rules = DEFAULT_RULES.__class__(dwell_fixes=5)
    state = new_state(order, T0)
    state, first = evaluate(state, fix(210, 0, T0, 20), order, T0, rules)
    state, second = evaluate(state, fix(210, 0, T0 + 61, 20), order, T0 + 61, rules)
    assert first == []
    assert brief(second) == [("location_ban", 0, "open", "breach", "possible")]


def test_warning_then_breach_is_one_episode_with_rising_seq() -> None:
    order = compiled(zones=[circle("z1", 0, 0, 200, warning_buffer_m=300)])
    alerts = run(order, [
        fix(400, 0, T0),         # within 300 m of the edge: warning
        fix(350, 0, T0 + 10),    # closer, still a warning: nothing new
        fix(100, 0, T0 + 20),    # inside: breach, same alert
        fix(400, 0, T0 + 30),    # back in the buffer: severity never falls
    ])  # fmt: skip
    assert brief(alerts) == [
        ("location_ban", 0, "open", "warning", "certain"),
        ("location_ban", 1, "updated", "breach", "certain"),
    ]
    assert len({a.alert_id for a in alerts}) == 1


def test_reentry_within_hysteresis_continues_the_episode() -> None:
    order = compiled(zones=[BAN])
    alerts = run(order, [
        fix(0, 0, T0),
        fix(1000, 0, T0 + 30),
        fix(0, 0, T0 + 100),     # back in 70 s after leaving: same episode, no new alert
        fix(1000, 0, T0 + 200),
        fix(1000, 0, T0 + 330),  # 130 s clearly out: closed
        fix(0, 0, T0 + 400),     # a new approach: a new episode
    ])  # fmt: skip
    assert brief(alerts) == [
        ("location_ban", 0, "open", "breach", "certain"),
        ("location_ban", 1, "closed", "breach", "certain"),
        ("location_ban", 0, "open", "breach", "certain"),
    ]
    assert alerts[0].alert_id == alerts[1].alert_id != alerts[2].alert_id


def test_breach_that_lasts_becomes_critical() -> None:
    order = compiled(zones=[BAN])
    alerts = run(order, [fix(0, 0, T0 + s) for s in range(0, 400, 30)])
    assert brief(alerts) == [
        ("location_ban", 0, "open", "breach", "certain"),
        ("location_ban", 1, "updated", "critical", "certain"),
    ]
    assert alerts[1].position is not None
    assert alerts[1].position.ts == datetime.fromtimestamp(T0 + 300, UTC)


def test_teleport_is_never_a_certain_breach_on_its_own() -> None:
    order = compiled(zones=[BAN])
    # 50 km away, then 10 s later in the zone: 5 km/s, an outlier.
    alerts = run(order, [fix(50_000, 0, T0), fix(0, 0, T0 + 10), fix(50_000, 0, T0 + 20)])
    assert alerts == []
    # Two consistent fixes confirm a real jump: the second one breaches (as possible, by dwell).
    alerts = run(order, [fix(50_000, 0, T0), fix(0, 0, T0 + 10), fix(5, 0, T0 + 20)])
    assert brief(alerts) == [("location_ban", 0, "open", "breach", "certain")]


def test_late_fix_is_evidence_without_rolling_back() -> None:
    order = compiled(zones=[BAN])
    alerts = run(order, [
        fix(1000, 0, T0 + 100),
        fix(0, 0, T0 + 50),      # older than the newest, and inside: late evidence
        fix(10, 0, T0 + 55),     # same late excursion: no second alert
        fix(1000, 0, T0 + 110),  # the running state is still "outside": nothing
    ])  # fmt: skip
    assert brief(alerts) == [("location_ban", 0, "closed", "breach", "certain")]
    assert alerts[0].late is True
    assert alerts[0].episode_started_at == datetime.fromtimestamp(T0 + 50, UTC)


def test_area_ban_by_municipality_code() -> None:
    order = compiled(
        zones=[{"zone_id": "utrecht", "kind": "area_ban", "municipality_code": "GM0344"}]
    )
    alerts = run(order, [fix(0, 0, T0)])  # Domplein is in the middle of Utrecht
    assert brief(alerts) == [("area_ban", 0, "open", "breach", "certain")]
    assert alerts[0].distance_m is not None and alerts[0].distance_m < -1000


def test_polygon_area_ban() -> None:
    order = compiled(zones=[square("sq", 0, 0, 100)])
    alerts = run(order, [fix(0, 0, T0), fix(500, 500, T0 + 10), fix(500, 500, T0 + 200)])
    assert brief(alerts) == [
        ("area_ban", 0, "open", "breach", "certain"),
        ("area_ban", 1, "closed", "breach", "certain"),
    ]


CONTACT = {"protected_person_id": "V-1", "min_distance_m": 500, "warning_distance_m": 1500}


def test_contact_ban_between_two_moving_devices() -> None:
    order = compiled(contact_bans=[CONTACT])
    alerts = run(order, [
        fix(0, 0, T0, device="VD-2001"),
        fix(3000, 0, T0 + 5),          # 3 km apart: nothing
        fix(0, 0, T0 + 50, device="VD-2001"),
        fix(1200, 0, T0 + 65),         # within 1500 m: warning (30 m/s, a car)
        fix(200, 0, T0 + 95),          # 200 m: breach (victim's fix 45 s older: still paired)
        fix(0, 300, T0 + 100, device="VD-2001"),  # the victim moves, 360 m: nothing new
    ])  # fmt: skip
    assert brief(alerts) == [
        ("contact_ban", 0, "open", "warning", "certain"),
        ("contact_ban", 1, "updated", "breach", "certain"),
    ]
    assert alerts[1].distance_m == pytest.approx(200, abs=1)
    assert alerts[1].protected_person_id == "V-1"
    # The alert carries the subject's position, never the victim's.
    assert alerts[1].position is not None
    subject = fix(200, 0, T0 + 95)
    assert (alerts[1].position.lat, alerts[1].position.lon) == (subject.lat, subject.lon)


def test_contact_ban_needs_fixes_close_in_time() -> None:
    order = compiled(contact_bans=[CONTACT])
    alerts = run(order, [fix(0, 0, T0, device="VD-2001"), fix(100, 0, T0 + 61)])
    assert alerts == []


def test_contact_ban_counts_both_accuracies() -> None:
    order = compiled(contact_bans=[{"protected_person_id": "V-1", "min_distance_m": 500}])
    # 520 m apart with 15 m + 15 m accuracy: possibly within 500 m: dwell, then breach.
    alerts = run(order, [
        fix(0, 0, T0, 15, device="VD-2001"), fix(520, 0, T0 + 5, 15), fix(520, 0, T0 + 15, 15),
    ])  # fmt: skip
    assert brief(alerts) == [("contact_ban", 0, "open", "breach", "possible")]


def test_presence_obligation_inside_its_schedule_only() -> None:
    # Monday 23 Nov 2026; 10:00 UTC = 11:00 in Amsterdam.
    schedule = [{"days": ["mon"], "start": "09:00", "end": "12:00"}]
    zone = circle("home", 0, 0, 100, kind="presence_obligation", schedule=schedule)
    order = compiled(zones=[zone])
    alerts = run(order, [fix(0, 0, T0), fix(2000, 0, T0 + 60)])
    assert brief(alerts) == [("presence_obligation", 0, "open", "breach", "certain")]
    assert alerts[0].distance_m == pytest.approx(1900, abs=2)
    # 12:30 local: outside the window, being away is allowed.
    assert run(order, [fix(2000, 0, T0 + 5400)]) == []


def test_signal_lost_opens_escalates_and_closes_with_the_next_fix() -> None:
    order = compiled(zones=[BAN])
    state = new_state(order, T0)
    state, _ = evaluate(state, fix(1000, 0, T0), order, T0)
    state, quiet = tick(state, order, T0 + 299)
    state, opened = tick(state, order, T0 + 300)
    state, again = tick(state, order, T0 + 400)
    state, escalated = tick(state, order, T0 + 900)
    state, closed = evaluate(state, fix(1000, 0, T0 + 950), order, T0 + 950)
    assert quiet == [] and again == []
    assert brief(opened + escalated + closed) == [
        ("signal_lost", 0, "open", "warning", "certain"),
        ("signal_lost", 1, "updated", "breach", "certain"),
        ("signal_lost", 2, "closed", "breach", "certain"),
    ]
    assert opened[0].episode_started_at == datetime.fromtimestamp(T0 + 300, UTC)


def test_signal_lost_for_a_device_never_heard() -> None:
    order = compiled()
    state = new_state(order, T0)
    state, alerts = tick(state, order, T0 + 301)
    assert brief(alerts) == [("signal_lost", 0, "open", "warning", "certain")]
    assert alerts[0].position is None


def test_tamper_is_critical_at_once_and_not_repeated() -> None:
    order = compiled()
    alerts = run(order, [
        event("strap_tamper", T0), event("strap_tamper", T0 + 30), event("case_tamper", T0 + 1000),
    ])  # fmt: skip
    assert brief(alerts) == [
        ("tamper", 0, "open", "critical", "certain"),
        ("tamper", 0, "open", "critical", "certain"),
    ]
    assert alerts[0].alert_id != alerts[1].alert_id


def test_low_battery_is_a_warning_for_probation_only() -> None:
    order = compiled()
    alerts = run(order, [
        fix(1000, 0, T0, battery_pct=40), fix(1000, 0, T0 + 10, battery_pct=14),
        fix(1000, 0, T0 + 20, battery_pct=12), event("charging", T0 + 30),
    ])  # fmt: skip
    assert brief(alerts) == [
        ("battery_low", 0, "open", "warning", "certain"),
        ("battery_low", 1, "closed", "warning", "certain"),
    ]
    assert {a.audience for a in alerts} == {"probation"}


def test_power_off_opens_signal_lost_at_once() -> None:
    order = compiled()
    alerts = run(order, [fix(1000, 0, T0), event("power_off", T0 + 5), fix(1000, 0, T0 + 60)])
    assert brief(alerts) == [
        ("signal_lost", 0, "open", "warning", "certain"),
        ("signal_lost", 1, "closed", "warning", "certain"),
    ]


def test_nothing_before_valid_from_or_after_valid_until() -> None:
    order = compiled(zones=[BAN], valid_from=T0 + 100, valid_until=T0 + 200)
    assert run(order, [fix(0, 0, T0), fix(0, 0, T0 + 250)]) == []
    assert brief(run(order, [fix(0, 0, T0 + 150)])) == [
        ("location_ban", 0, "open", "breach", "certain")
    ]


def test_expiry_and_revocation_close_running_episodes() -> None:
    order = compiled(zones=[BAN], valid_until=T0 + 200)
    state = new_state(order, T0)
    state, opened = evaluate(state, fix(0, 0, T0), order, T0)
    state, expired = tick(state, order, T0 + 200)
    assert brief(opened + expired) == [
        ("location_ban", 0, "open", "breach", "certain"),
        ("location_ban", 1, "closed", "breach", "certain"),
    ]
    assert expired[0].reason == "order expired"

    order = compiled(zones=[BAN])
    state = new_state(order, T0)
    state, _ = evaluate(state, fix(0, 0, T0), order, T0)
    revoked = compiled(zones=[BAN], version=2, event_type="order.revoked")
    state, closed = apply_order(state, revoked, T0 + 10)
    assert brief(closed) == [("location_ban", 1, "closed", "breach", "certain")]
    state, after = evaluate(state, fix(0, 0, T0 + 20), revoked, T0 + 20)
    assert after == []


def test_amendment_keeps_unchanged_zones_and_closes_changed_ones() -> None:
    v1 = compiled(zones=[BAN, square("sq", 5000, 0, 100)])
    state = new_state(v1, T0)
    state, opened = evaluate(state, fix(0, 0, T0), v1, T0)
    # Version 2 keeps z1 as it was and moves the square: z1's episode runs on.
    v2 = compiled(zones=[BAN, square("sq", 6000, 0, 100)], version=2, event_type="order.amended")
    state, amended = apply_order(state, v2, T0 + 10)
    state, later = evaluate(state, fix(10, 0, T0 + 20), v2, T0 + 20)
    assert brief(opened) == [("location_ban", 0, "open", "breach", "certain")]
    assert amended == [] and later == []
    # Version 3 changes z1 itself: its episode is closed, and the next fix opens a new one.
    v3 = compiled(zones=[circle("z1", 0, 0, 300)], version=3, event_type="order.amended")
    state, changed = apply_order(state, v3, T0 + 30)
    state, reopened = evaluate(state, fix(10, 0, T0 + 40), v3, T0 + 40)
    assert brief(changed + reopened) == [
        ("location_ban", 1, "closed", "breach", "certain"),
        ("location_ban", 0, "open", "breach", "certain"),
    ]
    assert changed[0].reason == "zone amended in version 3"
    assert reopened[0].alert_id != opened[0].alert_id


def test_stale_version_changes_nothing() -> None:
    v2 = compiled(zones=[BAN], version=2)
    state = new_state(v2, T0)
    v1 = compiled(zones=[square("sq", 0, 0, 50)], version=1)
    state, alerts = apply_order(state, v1, T0)
    assert alerts == [] and state.version == 2 and set(state.zone_fingerprints) == {"z1"}


@pytest.mark.parametrize(
    ("signal", "reason"),
    [
        (fix(0, 0, T0 + 61), "in the future"),
        (fix(0, 0, T0, accuracy=0.0), "accuracy_m"),
        (fix(0, 0, T0, accuracy=-1.0), "accuracy_m"),
        (fix(0, 0, math.nan), "ts"),
    ],
)
def test_bad_fixes_are_rejected_with_a_reason_and_leave_state_alone(
    signal: Signal, reason: str
) -> None:
    order = compiled(zones=[BAN])
    state = new_state(order, T0)
    before = copy_state(state)
    with pytest.raises(SignalRejected, match=reason):
        evaluate(state, signal, order, now=T0)
    assert state == before


def test_nan_and_out_of_range_coordinates_are_rejected() -> None:
    order = compiled(zones=[BAN])
    bad = fix(0, 0, T0)
    for lat, lon in [(math.nan, 5.0), (52.0, math.inf), (91.0, 5.0), (52.0, -181.0)]:
        signal = msgspec.structs.replace(bad, lat=lat, lon=lon)
        with pytest.raises(SignalRejected):
            evaluate(new_state(order, T0), signal, order, now=T0)


@settings(max_examples=300, deadline=None)
@given(
    order_id=st.text(max_size=30), rule=st.sampled_from(["location_ban", "contact_ban"]),
    subject_key=st.text(max_size=20), started_at=st.floats(-1e12, 1e12),
)  # fmt: skip
def test_an_alert_id_is_the_uuid5_of_its_episode(
    order_id: str, rule: str, subject_key: str, started_at: float
) -> None:
    """alert_id formats the SHA-1 digest itself (the UUID class cost twice as much); the text
    is still uuid5's, so ids already sent stay the ids of their episodes after an upgrade."""
    name = f"{order_id}|{rule}|{subject_key}|{round(started_at * 1000)}"
    expected = str(uuid.uuid5(engine.ALERT_NAMESPACE, name))
    assert engine.alert_id(order_id, rule, subject_key, started_at) == expected
