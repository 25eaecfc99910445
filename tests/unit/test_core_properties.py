"""Invariants of the engine, property-tested: one episode one alert_id, no flood along an edge,
the same decisions in any chunking and across a checkpoint/restore."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.wire import Alert
from services.core import evaluate, new_state, tick
from services.core.model import CompiledOrder, OrderState, Signal
from tests.support.orders import T0, circle, compiled, event, fix, square

ORDER = compiled(
    zones=[
        circle("z1", 0, 0, 200, warning_buffer_m=200),
        square("sq", 1500, 0, 300),
        circle("home", -1500, 0, 150, kind="presence_obligation",
               schedule=[{"days": ["mon", "tue"], "start": "10:30", "end": "12:00"}]),
    ],
    contact_bans=[{"protected_person_id": "V-1", "min_distance_m": 300, "warning_distance_m": 600}],
)  # fmt: skip

Step = tuple[str, float, float, float, float]  # (kind, dt, x, y, accuracy)


@st.composite
def walks(draw: st.DrawFn) -> list[tuple[Signal | None, float]]:
    """A plausible walk of the subject (and the victim), with events, ticks, late fixes and
    duplicates. Each item is (signal or None for a tick, wall clock)."""
    t, x, y = T0, draw(st.floats(-2500, 2500)), draw(st.floats(-800, 800))
    vx, vy = 0.0, 0.0
    items: list[tuple[Signal | None, float]] = []
    for _ in range(draw(st.integers(1, 120))):
        t += draw(st.floats(1, 90))
        x += draw(st.floats(-400, 400))
        y += draw(st.floats(-300, 300))
        acc = draw(st.sampled_from([3.0, 8.0, 25.0, 80.0]))
        kind = draw(st.sampled_from(["fix"] * 8 + ["victim", "late", "dup", "event", "tick"]))
        if kind == "fix":
            items.append((fix(x, y, t, acc, battery_pct=draw(st.integers(5, 100))), t))
        elif kind == "victim":
            vx, vy = vx + draw(st.floats(-300, 300)), vy + draw(st.floats(-300, 300))
            items.append((fix(vx, vy, t, acc, device="VD-2001"), t))
        elif kind == "late":
            items.append((fix(x, y, t - draw(st.floats(1, 600)), acc), t))
        elif kind == "dup" and items and items[-1][0] is not None:
            items.append((items[-1][0], t))
        elif kind == "event":
            name = draw(
                st.sampled_from(["strap_tamper", "heartbeat", "charging", "power_off", "battery"])
            )
            items.append((event(name, t, battery=draw(st.integers(0, 100))), t))
        else:
            items.append((None, t + draw(st.floats(0, 900))))
    return items


def replay(
    order: CompiledOrder, items: list[tuple[Signal | None, float]], state: OrderState | None = None
) -> tuple[OrderState, list[Alert]]:
    state = state or new_state(order, T0)
    alerts: list[Alert] = []
    for signal, now in items:
        if signal is None:
            state, out = tick(state, order, now)
        else:
            state, out = evaluate(state, signal, order, now)
        alerts += out
    return state, alerts


@settings(max_examples=200, deadline=None)
@given(items=walks(), cuts=st.lists(st.integers(0, 200), max_size=5))
def test_any_chunking_with_checkpoints_gives_the_same_decisions(
    items: list[tuple[Signal | None, float]], cuts: list[int]
) -> None:
    _, straight = replay(ORDER, items)
    state = new_state(ORDER, T0)
    chunked: list[Alert] = []
    bounds = sorted({0, len(items), *(c % (len(items) + 1) for c in cuts)})
    for lo, hi in itertools.pairwise(bounds):
        # Checkpoint and restore between chunks, as the evaluator does per batch.
        state = msgspec.msgpack.decode(msgspec.msgpack.encode(state), type=OrderState)
        state, out = replay(ORDER, items[lo:hi], state)
        chunked += out
    assert chunked == straight


@settings(max_examples=200, deadline=None)
@given(items=walks())
def test_one_episode_one_alert_id_with_a_gapless_rising_seq(
    items: list[tuple[Signal | None, float]],
) -> None:
    _, alerts = replay(ORDER, items)
    by_id: dict[str, list[Alert]] = defaultdict(list)
    for alert in alerts:
        by_id[alert.alert_id].append(alert)
    severity = {"warning": 1, "breach": 2, "critical": 3}
    for life in by_id.values():
        assert [a.seq for a in life] == list(range(len(life)))
        assert len({(a.rule, a.zone_id, a.protected_person_id) for a in life}) == 1
        assert life[0].status in ("open", "closed")  # closed at once: late evidence only
        assert all(a.status == "updated" for a in life[1:-1])
        assert all(a.status != "closed" for a in life[:-1])
        ranks = [severity[a.severity] for a in life]
        assert ranks == sorted(ranks), "severity fell within an episode"
    # Never two open episodes for one rule and zone at the same time.
    open_ids: dict[tuple[str, str | None, str | None], str] = {}
    for alert in alerts:
        key = (alert.rule, alert.zone_id, alert.protected_person_id)
        if alert.late:
            continue
        if alert.status == "open" and alert.rule != "tamper":
            assert key not in open_ids, f"second episode opened while {key} runs"
            open_ids[key] = alert.alert_id
        elif alert.status == "closed":
            assert open_ids.pop(key, alert.alert_id) == alert.alert_id


@settings(max_examples=200, deadline=None)
@given(
    accuracy=st.floats(5, 60),
    jitter=st.lists(st.floats(-0.95, 0.95), min_size=30, max_size=200),
    step_s=st.floats(1, 60),
    along_buffer=st.booleans(),
)
def test_walking_along_an_edge_with_jitter_is_one_alert(
    accuracy: float, jitter: list[float], step_s: float, along_buffer: bool
) -> None:
    """Walking along the edge of a 500 m circle (or of its 100 m warning buffer), each fix off
    by less than its accuracy: one episode with a handful of messages, never a flood."""
    order = compiled(zones=[circle("z1", 0, 0, 500, warning_buffer_m=100)])
    edge = 600.0 if along_buffer else 500.0
    items: list[tuple[Signal | None, float]] = []
    for i, j in enumerate(jitter):
        angle = i * 0.02
        r = edge + j * accuracy
        t = T0 + i * step_s
        items.append((fix(r * math.cos(angle), r * math.sin(angle), t, accuracy), t))
    _, alerts = replay(order, items)
    assert len({a.alert_id for a in alerts}) == 1
    assert alerts[0].status == "open"
    assert len(alerts) <= 4  # open, and at most three rises (to breach, certain, critical)
    assert all(a.status != "closed" for a in alerts)
