"""The batch path decides exactly as `evaluate` one signal at a time: the same alerts in the same
order, the same rejections, the same state afterwards — over random walks of several devices in
several orders (shared subject devices, a contact ban with a moving victim, an always-on
presence obligation, an order expiring), with late fixes, duplicates, outliers, malformed fixes,
health events, ticks and amendments, cut into random batches."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from geo.shapes import PolygonShape
from schemas.wire import Alert
from services.core import apply_order, evaluate, new_state, tick
from services.core.batch import SCALAR_BELOW, Partition, TrackRows
from services.core.bulk import compile_now, compiled_versions
from services.core.config import RuleConfig
from services.core.model import CompiledOrder, Fix, OrderState, Signal, SignalRejected
from tests.support.orders import T0, at, circle, compiled, event, fix, square

CONTACT = [{"protected_person_id": "V-1", "min_distance_m": 300, "warning_distance_m": 600}]


def _order_a(version: int = 1, radius: float = 200) -> CompiledOrder:
    return compiled(
        order_id="BB-A", version=version,
        zones=[
            circle("z1", 0, 0, radius, warning_buffer_m=200),
            square("sq", 1500, 0, 300),
            circle("home", -1500, 0, 150, kind="presence_obligation",
                   schedule=[{"days": ["mon", "tue"], "start": "10:30", "end": "12:00"}]),
        ],
        contact_bans=CONTACT,
    )  # fmt: skip


def _donut(
    zone_id: str, x: float, y: float, half: float, hole: float, **extra: Any
) -> dict[str, Any]:
    outer = square(zone_id, x, y, half, **extra)
    inner = square(zone_id, x, y, hole)["geometry"]["coordinates"][0]
    outer["geometry"]["coordinates"].append(inner[::-1])
    return outer


def _star(zone_id: str, x: float, y: float, radii: list[float], **extra: Any) -> dict[str, Any]:
    """A star-shaped polygon of len(radii) vertices around (x, y): bigger than a square."""
    n = len(radii)
    angles = [2 * math.pi * k / n for k in range(n)]
    ring = [
        list(reversed(at(x + r * math.cos(a), y + r * math.sin(a))))
        for a, r in zip(angles, radii, strict=True)
    ]
    return {
        "zone_id": zone_id,
        "kind": extra.pop("kind", "area_ban"),
        "geometry": {"type": "Polygon", "coordinates": [[*ring, ring[0]]]},
        **extra,
    }


# 48 vertices, a polygon as big as a simplified municipality's
STAR = [450.0 if k % 2 else 300.0 for k in range(48)]
ORDERS = [
    _order_a(),
    # The same ankle monitor in a second order: an always-on presence obligation (a polygon), and
    # an area ban with a hole (the courtyard is allowed).
    compiled(
        order_id="BB-B",
        zones=[
            square("area", 0, 0, 2500, kind="presence_obligation"),
            circle("c", 900, 0, 100),
            _donut("donut", -800, 300, 500, 200),
        ],
        victim_device=None,
    ),
    # Another subject whose order expires during the walk.
    compiled(
        order_id="BB-C",
        subject_device="EB-2002",
        zones=[
            circle("c2", 300, 300, 250, warning_buffer_m=100),
            _star("star", -1200, 0, STAR, warning_buffer_m=50),
        ],
        valid_until=T0 + 3000,
    ),
    # A subject who must stay on the grounds but out of the yard in their middle: being in the
    # hole is being outside the zone.
    compiled(
        order_id="BB-D",
        subject_device="EB-3003",
        zones=[_donut("grounds", 0, 0, 2500, 700, kind="presence_obligation")],
        victim_device=None,
    ),
]
MEMBERS = {
    "EB-1001": ["BB-A", "BB-B"],
    "VD-2001": ["BB-A"],
    "EB-2002": ["BB-C"],
    "EB-3003": ["BB-D"],
    # A subject's fixes from a device that is not the order's subject device: the old monitor
    # still sending after an amendment swapped it, routed by a router that has not seen it yet.
    "EB-9009": ["BB-A", "BB-B"],
}
INDEX = {o.order_id: o for o in ORDERS}


@dataclass
class Step:
    kind: str  # "signals", "tick" or "amend"
    now: float
    signals: list[tuple[str, Signal]]


def _bad(f: Fix, how: str) -> Fix:
    changes = {
        "nan": {"lat": math.nan},
        "range": {"lon": 200.0},
        "accuracy": {"accuracy_m": 0.0},
        "future": {"t": f.t + 3600},
    }[how]
    return Fix(**{**{k: getattr(f, k) for k in f.__struct_fields__}, **changes})


@st.composite
def scenarios(draw: st.DrawFn) -> list[Step]:
    t = T0
    pos = {d: [draw(st.floats(-2500, 2500)), draw(st.floats(-800, 800))] for d in MEMBERS}
    pos["EB-9009"] = pos["EB-1001"]  # the two monitors on one ankle, during the swap
    sent: dict[str, list[tuple[float, float, float]]] = {d: [] for d in MEMBERS}
    steps: list[Step] = []
    pending: list[tuple[str, Signal]] = []
    for _ in range(draw(st.integers(1, 150))):
        t += draw(st.floats(0, 60))
        device = draw(
            st.sampled_from(["EB-1001"] * 4 + ["VD-2001", "EB-2002", "EB-3003", "EB-9009"])
        )
        p = pos[device]
        stride = draw(st.sampled_from([5.0, 50.0, 300.0]))
        p[0] += draw(st.floats(-stride, stride))
        p[1] += draw(st.floats(-stride, stride))
        acc = draw(st.sampled_from([3.0, 8.0, 25.0, 80.0]))
        kind = draw(
            st.sampled_from(["fix"] * 10 + ["late", "jump", "bad", "event", "cut", "tick", "amend"])
        )
        signal: Signal | None = None
        if kind == "fix":
            battery = draw(st.none() | st.integers(5, 100))
            signal = fix(p[0], p[1], t, acc, device=device, battery_pct=battery)
        elif kind == "late" and sent[device]:
            # A fix buffered out of coverage, delivered after newer ones.
            old_t, old_x, old_y = draw(st.sampled_from(sent[device]))
            signal = fix(old_x, old_y, old_t, acc, device=device)
        elif kind == "jump":
            signal = fix(p[0] + 50_000, p[1], t, acc, device=device)
        elif kind == "bad":
            how = draw(st.sampled_from(["nan", "range", "accuracy", "future"]))
            signal = _bad(fix(p[0], p[1], t, acc, device=device), how)
        elif kind == "event":
            name = draw(st.sampled_from(["strap_tamper", "charging", "power_off", "battery"]))
            signal = event(name, t, device=device, battery=draw(st.integers(0, 100)))
        if kind == "fix":
            sent[device].append((t, p[0], p[1]))
        if signal is not None:
            pending += [(order_id, signal) for order_id in MEMBERS[signal.device_id]]
        if kind in ("cut", "tick", "amend") and pending:
            steps.append(Step("signals", t, pending))
            pending = []
        if kind == "tick":
            steps.append(Step("tick", t + draw(st.floats(0, 900)), []))
        elif kind == "amend":
            steps.append(Step("amend", t, []))
    if pending:
        steps.append(Step("signals", t, pending))
    return steps


def _one_by_one(steps: list[Step]) -> tuple[list[list[Alert]], list[list[int]], list[OrderState]]:
    orders = dict(INDEX)
    states = {o.order_id: new_state(o, T0) for o in ORDERS}
    alerts: list[list[Alert]] = []
    rejected: list[list[int]] = []
    version = 1
    for step in steps:
        out: list[Alert] = []
        bad: list[int] = []
        if step.kind == "signals":
            for position, (order_id, signal) in enumerate(step.signals):
                try:
                    states[order_id], more = evaluate(
                        states[order_id], signal, orders[order_id], step.now
                    )
                except SignalRejected:
                    bad.append(position)
                    continue
                out += more
        elif step.kind == "tick":
            for order_id in states:
                states[order_id], more = tick(states[order_id], orders[order_id], step.now)
                out += more
        else:
            version += 1
            orders["BB-A"] = _order_a(version, radius=200 + 50 * (version % 2))
            states["BB-A"], out = apply_order(states["BB-A"], orders["BB-A"], step.now)
        alerts.append(out)
        rejected.append(bad)
    return alerts, rejected, [states[o.order_id] for o in ORDERS]


class _Store:
    """The evaluator's checkpoint table, as bytes: per order the newest state and tracks."""

    def __init__(self, scalar_below: int) -> None:
        self.rows: dict[str, tuple[bytes, bytes]] = {}
        self.scalar_below = scalar_below

    def save(self, partition: Partition, dirty: set[int]) -> None:
        indices = sorted(dirty)
        for i, made in zip(indices, partition.checkpoint(indices), strict=True):
            order_id = partition.orders[i].order_id
            state = _encode(made.state) if made.state is not None else self.rows[order_id][0]
            self.rows[order_id] = (state, b"" if made.tracks is None else _encode(made.tracks))

    def load(self, orders: dict[str, CompiledOrder]) -> Partition:
        partition = Partition(scalar_below=self.scalar_below)
        for order in ORDERS:  # in the same order as the uninterrupted partition
            state, tracks = self.rows[order.order_id]
            partition.restore(
                orders[order.order_id], T0, msgspec.msgpack.decode(state, type=OrderState),
                msgspec.msgpack.decode(tracks, type=TrackRows) if tracks else None,
            )  # fmt: skip
        return partition


_encode = msgspec.msgpack.Encoder().encode


def _in_batches(
    steps: list[Step], restarts: frozenset[int] = frozenset(), scalar_below: int = 0
) -> tuple[list[list[Alert]], list[list[int]], list[OrderState]]:
    """The batch path; after the steps in `restarts` the partition is checkpointed (only the
    orders each step touched, as the evaluator does) and rebuilt from the checkpoint. With
    `scalar_below` 0 every batch is decided in bulk, however small."""
    partition = Partition(scalar_below=scalar_below)
    store = _Store(scalar_below)
    for order in ORDERS:
        partition.upsert(order, T0)
    store.save(partition, set(range(len(ORDERS))))
    orders = dict(INDEX)
    alerts: list[list[Alert]] = []
    rejected: list[list[int]] = []
    version = 1
    for n, step in enumerate(steps):
        if step.kind == "signals":
            outcome = partition.evaluate(partition.batch(step.signals), step.now)
            alerts.append(outcome.alerts)
            rejected.append([position for position, _ in outcome.rejected])
            dirty = outcome.touched
        elif step.kind == "tick":
            out, dirty = partition.tick(step.now)
            alerts.append(out)
            rejected.append([])
        else:
            version += 1
            orders["BB-A"] = _order_a(version, radius=200 + 50 * (version % 2))
            alerts.append(partition.upsert(orders["BB-A"], step.now))
            rejected.append([])
            dirty = {partition.index["BB-A"]}
        store.save(partition, dirty)
        if n in restarts:
            partition = store.load(orders)
    return alerts, rejected, [partition.export_state(i) for i in range(len(ORDERS))]


@settings(max_examples=300, deadline=None)
@given(steps=scenarios(), scalar_below=st.sampled_from([0, SCALAR_BELOW]))
def test_batches_decide_exactly_as_evaluate_one_signal_at_a_time(
    steps: list[Step], scalar_below: int
) -> None:
    """In bulk, or (the evaluator's default) small batches by the scalar path whole."""
    expected_alerts, expected_rejected, expected_states = _one_by_one(steps)
    alerts, rejected, states = _in_batches(steps, scalar_below=scalar_below)
    assert alerts == expected_alerts
    assert rejected == expected_rejected
    assert states == expected_states


@settings(max_examples=200, deadline=None)
@given(steps=scenarios(), data=st.data())
def test_checkpoints_of_touched_orders_restore_to_the_same_decisions(
    steps: list[Step], data: st.DataObject
) -> None:
    """The evaluator stores, per batch, only the orders a batch touched, and of those the
    state only where its objects changed: rebuilt from that at any step, the partition decides
    as if it had never stopped."""
    restarts = data.draw(st.frozensets(st.integers(0, max(len(steps) - 1, 0))), label="restarts")
    scalar_below = data.draw(st.sampled_from([0, SCALAR_BELOW]), label="scalar_below")
    expected_alerts, expected_rejected, expected_states = _one_by_one(steps)
    alerts, rejected, states = _in_batches(steps, restarts, scalar_below)
    assert alerts == expected_alerts
    assert rejected == expected_rejected
    assert states == expected_states


# One subject lingering at the edges of a location ban and an area ban, both with warning
# buffers, with accuracies that straddle them: warnings, possible and certain breaches, dwell,
# re-entry within the hysteresis, breaches long enough to turn critical, the device's own
# episodes (battery, power off) beside them, and the order running out mid-walk.
LINGERING = compiled(
    order_id="BB-L", subject_device="EB-5005", victim_device=None, valid_until=T0 + 2400,
    zones=[
        circle("ring", 0, 0, 200, warning_buffer_m=150),
        square("block", 900, 0, 200, warning_buffer_m=100),
        _star("star", 300, -500, STAR, warning_buffer_m=80),
    ],
)  # fmt: skip


@st.composite
def lingering_walks(draw: st.DrawFn) -> list[list[Signal]]:
    t, x, y = T0, draw(st.floats(-500, 1300)), draw(st.floats(-350, 350))
    batches: list[list[Signal]] = [[]]
    for _ in range(draw(st.integers(1, 120))):
        t += draw(st.floats(1, 40))
        x += draw(st.floats(-30, 30))
        y += draw(st.floats(-30, 30))
        accuracy = draw(st.sampled_from([3.0, 8.0, 25.0, 60.0, 120.0]))
        battery = draw(st.none() | st.integers(5, 100))
        # Rare: the device's own episodes send every later fix of the order to `evaluate`.
        happening = draw(st.sampled_from(["fix"] * 40 + ["power_off", "battery"]))
        batches[-1].append(
            fix(x, y, t, accuracy, device="EB-5005", battery_pct=battery)
            if happening == "fix"
            else event(happening, t, device="EB-5005", battery=battery)
        )
        if draw(st.integers(0, 4)) == 0:
            batches.append([])
    return batches


@settings(max_examples=300, deadline=None)
@given(batches=lingering_walks())
def test_open_episodes_are_carried_in_bulk_exactly_as_evaluate_steps_them(
    batches: list[list[Signal]],
) -> None:
    """A fix that leaves an order's open episodes as they are but for their counters is decided
    in bulk; every other goes to `evaluate`. Either way: the same alerts, the same state."""
    partition = Partition(scalar_below=0)
    partition.upsert(LINGERING, T0)
    state = new_state(LINGERING, T0)
    for n, signals in enumerate(batches):
        now = T0 + 10_000 + n
        expected: list[Alert] = []
        for signal in signals:
            state, out = evaluate(state, signal, LINGERING, now)
            expected += out
        items: list[tuple[str, Signal]] = [("BB-L", signal) for signal in signals]
        assert partition.evaluate(partition.batch(items), now).alerts == expected
        assert partition.export_state(0) == state


def test_a_breach_that_goes_on_is_decided_in_bulk_until_it_turns_critical() -> None:
    """Parked inside an area ban: the first fix opens the breach through `evaluate`, the next
    ones change nothing an alert says and stay in bulk, the fix that makes the breach critical
    (five minutes on) goes to `evaluate` again, and after the order's end a fix only moves the
    track (its battery level is not taken: the order no longer watches it)."""
    order = compiled(
        order_id="BB-L", subject_device="EB-5005", victim_device=None, valid_until=T0 + 340,
        zones=[square("block", 900, 0, 200, warning_buffer_m=100)],
    )  # fmt: skip
    partition = Partition(scalar_below=0)
    partition.upsert(order, T0)
    state = new_state(order, T0)
    parked = [
        fix(900, 0, T0 + 30 * k, 8.0, device="EB-5005", battery_pct=50 + k) for k in range(13)
    ]
    outcomes = []
    for signal in parked:
        outcomes.append(partition.evaluate(partition.batch([("BB-L", signal)]), signal.t + 1))
        state, _ = evaluate(state, signal, order, signal.t + 1)
        assert partition.export_state(0) == state
    assert [o.quiet for o in outcomes] == [0] + [1] * 9 + [0, 1, 1]
    assert [(a.severity, a.status) for o in outcomes for a in o.alerts] == [
        ("breach", "open"), ("critical", "updated"),
    ]  # fmt: skip
    episode = state.episodes["zone:block"]
    assert (episode.possible_count, episode.last_t) == (12, parked[-2].t)
    track = state.devices["EB-5005"]
    assert (track.last_t, track.battery_pct) == (parked[-1].t, 61)


def test_quiet_fixes_are_decided_in_bulk_and_loud_ones_by_the_engine() -> None:
    """Not only equal but actually batched: far-away fixes never reach the scalar path, and a
    fix inside a zone does, with everything after it of the same order."""
    partition = Partition(scalar_below=0)
    for order in ORDERS:
        partition.upsert(order, T0)
    far = [("BB-C", fix(-5000 + i, -5000, T0 + i, 5.0, device="EB-2002")) for i in range(50)]
    outcome = partition.evaluate(partition.batch(far), T0 + 60)
    assert outcome.quiet == 50 and outcome.alerts == []
    inside = [("BB-C", fix(300, 300, T0 + 100, 5.0, device="EB-2002"))]
    after = [("BB-C", fix(-5000, -5000, T0 + 101 + i, 5.0, device="EB-2002")) for i in range(3)]
    outcome = partition.evaluate(partition.batch(inside + after), T0 + 110)
    assert outcome.quiet == 0
    assert [(a.rule, a.zone_id, a.status) for a in outcome.alerts] == [
        ("location_ban", "c2", "open")
    ]


def test_a_municipality_two_orders_name_is_decided_in_bulk_from_one_copy_of_its_edges() -> None:
    """A municipality is a large polygon (hundreds of vertices), and a subject who must stay in
    Utrecht is inside its box all day: those fixes are decided in bulk like any other, by the
    municipality's edges, which the two orders naming it share in the edge table."""
    city = {"zone_id": "city", "kind": "presence_obligation", "municipality_code": "GM0344"}
    orders = [
        compiled(order_id=f"BB-U{k}", subject_device=f"EB-70{k}", zones=[city], victim_device=None)
        for k in (1, 2)
    ]  # fmt: skip
    shape = orders[0].zones[0].shape
    assert isinstance(shape, PolygonShape) and shape is orders[1].zones[0].shape
    assert shape.signed_distance(*at(0, 0)) < -1000  # the Domplein: deep inside Utrecht
    partition = Partition(scalar_below=0)
    for order in orders:
        partition.upsert(order, T0)
    items: list[tuple[str, Signal]] = [
        (order.order_id, fix(30 * n, -20 * n, T0 + n, 10.0, device=f"EB-70{k}"))
        for n in range(20)
        for k, order in ((1, orders[0]), (2, orders[1]))
    ]
    outcome = partition.evaluate(partition.batch(items), T0 + 30)
    assert outcome.quiet == len(items) and outcome.alerts == []
    for k, order in enumerate(orders):
        state = new_state(order, T0)
        for order_id, signal in items:
            if order_id == order.order_id:
                state, _ = evaluate(state, signal, order, T0 + 30)
        assert partition.export_state(k) == state
    assert partition._edges.size == len(shape.edge_rows()) > 50  # one copy for both orders


def test_a_fix_waiting_for_a_polygons_edges_keeps_its_place_before_later_fixes() -> None:
    """The first fix near a small polygon's box sets its order aside until the polygon's edges
    are in the table, and the order's later fixes in the batch wait with it: each is still
    decided after the ones before it. Here the jump that follows is measured from the fix in
    the courtyard, so it is an outlier."""
    order = compiled(
        order_id="BB-E", subject_device="EB-4004", victim_device=None,
        zones=[_donut("yard", 0, 0, 1000, 500)],
    )  # fmt: skip
    in_the_courtyard = fix(0, 0, T0, 5.0, device="EB-4004")
    far_at_once = fix(0, 3000, T0 + 1, 5.0, device="EB-4004")  # clear of the box: no edges
    partition = Partition(scalar_below=0)
    partition.upsert(order, T0)
    items: list[tuple[str, Signal]] = [("BB-E", in_the_courtyard), ("BB-E", far_at_once)]
    outcome = partition.evaluate(partition.batch(items), T0 + 5)
    state = new_state(order, T0)
    for signal in (in_the_courtyard, far_at_once):
        state, _ = evaluate(state, signal, order, T0 + 5)
    assert state.devices["EB-4004"].outlier
    assert partition.export_state(0) == state
    assert outcome.quiet == 1  # the fix in the courtyard, once the edges were there


def test_an_order_with_an_episode_that_is_not_a_zones_is_never_carried_in_bulk() -> None:
    """Signal lost is open and the zones are far: the fix that ends the silence must still go
    to `evaluate`, which closes the episode."""
    partition = Partition(scalar_below=0)
    partition.upsert(ORDERS[2], T0)
    alerts, _ = partition.tick(T0 + 300)
    assert [(a.rule, a.status) for a in alerts] == [("signal_lost", "open")]
    back = fix(-5000, -5000, T0 + 301, 5.0, device="EB-2002")
    outcome = partition.evaluate(partition.batch([("BB-C", back)]), T0 + 302)
    assert [(a.rule, a.status) for a in outcome.alerts] == [("signal_lost", "closed")]
    assert outcome.quiet == 0


def test_a_batch_too_small_to_pay_for_the_bulk_decision_takes_the_scalar_path() -> None:
    partition = Partition()
    for order in ORDERS:
        partition.upsert(order, T0)
    far = [("BB-C", fix(-5000 + i, -5000, T0 + i, 5.0, device="EB-2002")) for i in range(60)]
    small, large = far[: SCALAR_BELOW - 1], far[SCALAR_BELOW - 1 :]
    assert partition.evaluate(partition.batch(small), T0 + 60).quiet == 0
    assert partition.evaluate(partition.batch(large), T0 + 60).quiet == len(large)


def test_a_signal_for_an_order_it_does_not_hold_is_reported_not_dropped_silently() -> None:
    partition = Partition()
    partition.upsert(ORDERS[2], T0)
    outcome = partition.evaluate(
        partition.batch([("BB-X", fix(0, 0, T0, device="EB-2002"))]), T0 + 1
    )
    assert outcome.rejected == [(0, "order BB-X is not held by this evaluator")]


def test_a_quiet_late_fix_does_not_move_the_track_back() -> None:
    """Far from every zone a late fix decides nothing, yet the track keeps the newest fix: the
    next fix's speed check must measure from there."""
    partition = Partition(scalar_below=0)
    partition.upsert(ORDERS[2], T0)
    newest = fix(-5000, -5000, T0 + 20, 5.0, device="EB-2002")
    late = fix(-5010, -5000, T0 + 10, 5.0, device="EB-2002")
    partition.evaluate(partition.batch([("BB-C", newest)]), T0 + 30)
    partition.evaluate(partition.batch([("BB-C", late)]), T0 + 31)
    track = partition.export_state(0).devices["EB-2002"]
    assert (track.last_t, track.lon) == (newest.t, newest.lon)


@settings(max_examples=100, deadline=None)
@given(
    order_ids=st.lists(st.sampled_from(["BB-A", "BB-B", "BB-C", "BB-X", "BB-Y"]), max_size=30),
    lookup=st.sampled_from(["by hash", "by id", "given"]),
    scalar_below=st.sampled_from([0, SCALAR_BELOW]),
)
def test_signals_of_orders_it_does_not_hold_are_set_aside_wherever_they_come(
    order_ids: list[str], lookup: str, scalar_below: int
) -> None:
    """Whether a batch finds its orders by the ids' hashes, by the ids themselves (once two
    held ids share a hash), or is handed their rows (as the evaluator does), and whether it is
    large enough for its columns: the held orders' signals keep their rows and their order,
    the others are reported at their positions in the input."""
    partition = Partition(scalar_below=scalar_below)
    for order in ORDERS:
        partition.upsert(order, T0)
    if lookup == "by id":
        partition._rows_by_hash.distinct = False  # what two held ids with one hash would do
    items = [(o, fix(10.0 * n, 0, T0 + n, device="EB-2002")) for n, o in enumerate(order_ids)]
    rows = [partition.index.get(o, -1) for o in order_ids]
    batch = partition.batch(items, rows if lookup == "given" else None)
    held = [n for n, o in enumerate(order_ids) if o in partition.index]
    assert batch.order.tolist() == [partition.index[order_ids[n]] for n in held]
    assert [signal.t for signal in batch.signals] == [T0 + n for n in held]
    assert batch.bulk == (len(held) >= scalar_below)
    if batch.bulk:
        assert batch.t.tolist() == [T0 + n for n in held]
    assert batch.unknown == [
        (n, f"order {o} is not held by this evaluator")
        for n, o in enumerate(order_ids)
        if o not in partition.index
    ]
    if batch.positions is not None:
        assert batch.positions.tolist() == held


def test_every_protected_device_is_watched_however_the_track_columns_grow() -> None:
    """Three devices an order, and the track columns grow (new, larger arrays) at the 17th and
    the 33rd device. An order whose victim's device is the one that grows them is taken in (it
    used to raise IndexError), and that victim is watched: a fix of theirs near the subject is
    decided by the contact ban, as `evaluate` decides it, not passed as quiet."""
    bans = [{"protected_person_id": v, "min_distance_m": 300, "warning_distance_m": 600}
            for v in ("V-1", "V-2")]  # fmt: skip
    victims = [{"person_id": "V-1", "device_id": "VD-1"}, {"person_id": "V-2", "device_id": "VD-2"}]
    orders = [
        compiled(order_id=f"BB-{n:02d}", subject_device=f"EB-{n:02d}", contact_bans=bans,
                 protected_persons=victims)
        for n in range(12)
    ]  # fmt: skip
    partition = Partition(scalar_below=0)
    states = {}
    for order in orders:
        partition.upsert(order, T0)
        states[order.order_id] = new_state(order, T0)
    # The first victim far away: no episode, so the order is not held for the scalar path.
    for step, (device, x) in enumerate([("EB", 0.0), ("VD-1", 5000.0), ("VD-2", 100.0)]):
        signals = [
            (o.order_id, fix(x, 0, T0 + step, device=o.subject_device_id or "")
             if device == "EB" else fix(x, 0, T0 + step, device=device))
            for o in orders
        ]  # fmt: skip
        expected: list[Alert] = []
        for (order_id, signal), order in zip(signals, orders, strict=True):
            states[order_id], out = evaluate(states[order_id], signal, order, T0 + 10)
            expected += out
        outcome = partition.evaluate(partition.batch(signals), T0 + 10)
        assert outcome.alerts == expected
    assert len(expected) == 12  # every order's second victim is too close: one alert each


def test_the_compiled_pass_is_compiled_once_for_what_a_partition_passes() -> None:
    """`compile_now` (the evaluator's start, the bench's warm-up) compiles the very
    specialisation batches use: a batch with rule settings given as ints, a dropped unknown
    order and a small polygon's edges added mid-pass compiles nothing more."""
    compile_now()
    assert compiled_versions() == 1
    rules = RuleConfig(max_future_skew_s=60, max_speed_mps=70, contact_window_s=60)  # ints
    partition = Partition(rules, scalar_below=0)
    for order in ORDERS:
        partition.upsert(order, T0)
    items: list[tuple[str, Signal]] = [
        ("BB-B", fix(-800, 300, T0, 5.0)),  # in the donut's courtyard: its edges are fetched
        ("BB-X", fix(0, 0, T0 + 1, 5.0)),
        ("BB-C", fix(-5000, -5000, T0 + 2, 5.0, device="EB-2002")),
    ]
    outcome = partition.evaluate(partition.batch(items), T0 + 10)
    assert outcome.quiet == 2 and [p for p, _ in outcome.rejected] == [1]
    assert compiled_versions() == 1
