"""Real movement: the GPS tracks moved to Utrecht, against zones placed along them.

Expected outcomes, by hand (preconditions in the tests check the track shapes they rely on):
- a 40 m disc centred on the point farthest from the start. The Leuven run, the Korita ride and
  the Mojstrovka hike pass it in one stretch: exactly one location-ban episode, a breach that
  ends certain (5 m fixes reach the centre), closed once the walker is 120 s clearly away. The
  Cerknica trail passes it three times, more than 120 s apart: three episodes, the last still
  open when the file ends inside it.
- a 300 m disc 5 km north of the track's northernmost point: nothing, ever.
- a victim standing at the start of the Leuven run (a 7.5 minute loop back to the start) with a
  100 m contact ban: a breach at once (distance 0), closed two minutes after the runner is out
  of reach, and a second episode when the loop brings the runner back.
"""

from __future__ import annotations

import itertools
import math

import pytest

from schemas.wire import Alert
from services.core import evaluate, new_state
from services.core.model import Signal
from tests.support.orders import T0, circle, compiled, fix
from tests.support.tracks import TrackPoint, load

ONE_PASS = ["leuven-run.gpx", "korita-zbevnica.gpx", "Mojstrovka.gpx"]


def _stretches(
    track: list[TrackPoint], cx: float, cy: float, r: float
) -> list[tuple[float, float]]:
    """(first, last) time of every stretch of the track within r of (cx, cy)."""
    spans: list[tuple[float, float]] = []
    previous = False
    for p in track:
        inside = math.hypot(p.x - cx, p.y - cy) < r
        if inside and not previous:
            spans.append((p.dt, p.dt))
        elif inside:
            spans[-1] = (spans[-1][0], p.dt)
        previous = inside
    return spans


def _run_zones(track: list[TrackPoint]) -> list[Alert]:
    far = max(track, key=lambda p: math.hypot(p.x, p.y))
    north = max(p.y for p in track) + 5000
    order = compiled(zones=[circle("far", far.x, far.y, 40), circle("north", 0, north, 300)])
    state = new_state(order, T0)
    alerts: list[Alert] = []
    for p in track:
        state, out = evaluate(state, fix(p.x, p.y, T0 + p.dt, 5.0), order, T0 + p.dt)
        alerts += out
    assert all(a.zone_id == "far" for a in alerts), "the zone 5 km north saw an alert"
    return alerts


@pytest.mark.parametrize("name", ONE_PASS)
def test_track_passing_a_location_ban_once(name: str) -> None:
    track = load(name)
    far = max(track, key=lambda p: math.hypot(p.x, p.y))
    spans = _stretches(track, far.x, far.y, 40 + 5)
    assert len(spans) == 1, "precondition: the track passes the zone once"
    assert track[-1].dt - spans[0][1] > 120 + 60, "precondition: it is away long enough to close"
    alerts = _run_zones(track)
    assert len({a.alert_id for a in alerts}) == 1
    assert (alerts[0].seq, alerts[0].status, alerts[0].severity) == (0, "open", "breach")
    assert alerts[-1].status == "closed" and alerts[-1].certainty == "certain"
    assert len(alerts) <= 3  # open (possible or certain), at most one rise, close


def test_cerknica_trail_passes_the_far_point_three_times() -> None:
    track = load("cerknicko-jezero.gpx")
    far = max(track, key=lambda p: math.hypot(p.x, p.y))
    spans = _stretches(track, far.x, far.y, 40 + 5)
    assert len(spans) == 3, "precondition: three passes"
    gaps = [b[0] - a[1] for a, b in itertools.pairwise(spans)]
    assert min(gaps) > 120, "precondition: passes far enough apart to be separate episodes"
    alerts = _run_zones(track)
    assert [(a.seq, a.status) for a in alerts] == [
        (0, "open"), (1, "closed"), (0, "open"), (1, "closed"), (0, "open"),
    ]  # fmt: skip
    assert len({a.alert_id for a in alerts}) == 3


def test_runner_leaving_a_victim_at_the_start() -> None:
    track = load("leuven-run.gpx")
    order = compiled(contact_bans=[{"protected_person_id": "V-1", "min_distance_m": 100}])
    state = new_state(order, T0)
    signals: list[Signal] = []
    victim_t = 0.0
    for p in track:
        while victim_t <= p.dt:  # the victim's phone reports every 30 s from the start point
            signals.append(fix(0, 0, T0 + victim_t, 10.0, device="VD-2001"))
            victim_t += 30
        signals.append(fix(p.x, p.y, T0 + p.dt, 5.0))
    alerts = []
    for signal in signals:
        state, out = evaluate(state, signal, order, signal.t)
        alerts += out
    assert max(math.hypot(p.x, p.y) for p in track) > 300, "precondition: the runner leaves"
    assert math.hypot(track[-1].x, track[-1].y) < 20, "precondition: the loop ends at the start"
    assert [(a.rule, a.seq, a.status) for a in alerts] == [
        ("contact_ban", 0, "open"),
        ("contact_ban", 1, "closed"),
        ("contact_ban", 0, "open"),
        ("contact_ban", 1, "updated"),
    ]
    assert alerts[0].distance_m == 0.0 and alerts[0].certainty == "certain"
    assert alerts[0].alert_id == alerts[1].alert_id != alerts[2].alert_id
