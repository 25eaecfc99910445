"""What the simulator will do, worked out in advance and pure: protection orders in real Dutch
municipalities and, for each, a subject's ankle monitor (and where the rule needs one, the
victim's device) moving along a plausible path with GPS noise, dropouts, late and duplicated
fixes, scripted to breach one rule at a known time.

No clock and no I/O: `plan(cases, seed, start)` gives the same orders and records for the
same arguments, so a test can run a plan through the rules engine and know what must come out.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import shapely

from geo import municipalities
from geo.projection import LocalPlane

Rule = Literal[
    "location_ban", "area_ban", "contact_ban", "presence_obligation", "signal_lost", "tamper",
    "battery_low",
]  # fmt: skip
RULES: tuple[Rule, ...] = (
    "location_ban", "area_ban", "contact_ban", "presence_obligation", "signal_lost", "tamper",
    "battery_low",
)  # fmt: skip
EVERY_DAY = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

# Control-room regions and a municipality in each (CBS 2023 codes, shipped in geo/data).
PLACES: tuple[tuple[str, str], ...] = (
    ("midden-nederland", "GM0344"),  # Utrecht
    ("amsterdam-amstelland", "GM0363"),  # Amsterdam
    ("rotterdam-rijnmond", "GM0599"),  # Rotterdam
    ("haaglanden", "GM0518"),  # 's-Gravenhage
    ("oost-brabant", "GM0796"),  # 's-Hertogenbosch
    ("gelderland-midden", "GM0202"),  # Arnhem
    ("groningen", "GM0014"),  # Groningen
)


@dataclass(frozen=True, slots=True)
class Record:
    """One record to produce, `at_s` seconds after the start."""

    at_s: float
    topic: Literal["positions.v1", "device-events.v1"]
    key: str
    value: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Expected:
    """An alert the plan must raise: this rule of this order, not before `after_s`."""

    order_id: str
    rule: Rule
    after_s: float


@dataclass
class Plan:
    start: float
    orders: list[dict[str, Any]] = field(default_factory=list)  # order events, as CJIB sends
    records: list[Record] = field(default_factory=list)  # sorted by at_s
    expected: list[Expected] = field(default_factory=list)
    duration_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Noise:
    """How real devices misbehave; fractions of fixes."""

    dropped: float = 0.03
    duplicated: float = 0.02
    late: float = 0.02
    late_by_s: float = 45.0


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _centre(code: str) -> tuple[float, float]:
    point = shapely.geometry.shape(municipalities.geometry(code)).representative_point()
    return float(point.y), float(point.x)


class _Case:
    """One order and its devices, placed `offset` metres from a municipality's inner point."""

    def __init__(
        self, n: int, rule: Rule, rng: random.Random, start: float, interval_s: float, tag: str
    ):
        self.n, self.rule, self.rng, self.start, self.interval_s = n, rule, rng, start, interval_s
        self.region, self.code = PLACES[n % len(PLACES)]
        lat0, lon0 = _centre(self.code)
        # Later cases in the same municipality sit on rings around its inner point, 1.5 km
        # apart, so that the map shows them apart.
        earlier = n // len(PLACES)
        dx = dy = 0.0
        if earlier:
            ring, step = divmod(earlier - 1, 8)
            dx = 1500 * (ring + 1) * math.cos(step * math.pi / 4)
            dy = 1500 * (ring + 1) * math.sin(step * math.pi / 4)
        self.home = LocalPlane.at(lat0, lon0).to_latlon(dx, dy)
        self.plane = LocalPlane.at(*self.home)
        self.tag = f"{tag}{n:05d}"
        self.order_id = f"BB-SIM-{self.tag}"
        self.subject_device, self.victim_device = f"EB-SIM-{self.tag}", f"VD-SIM-{self.tag}"

    def at(self, x: float, y: float) -> tuple[float, float]:
        return self.plane.to_latlon(x, y)

    def order_event(self) -> dict[str, Any]:
        zones: list[dict[str, Any]] = []
        bans: list[dict[str, Any]] = []
        lat, lon = self.home
        if self.rule in ("location_ban", "signal_lost", "tamper", "battery_low"):
            zones.append({"zone_id": "home", "kind": "location_ban", "label": "victim's home",
                          "geometry": {"type": "Point", "coordinates": [lon, lat]},
                          "radius_m": 200, "warning_buffer_m": 300})  # fmt: skip
        elif self.rule == "area_ban":
            zones.append({"zone_id": "city", "kind": "area_ban",
                          "label": municipalities.name(self.code),
                          "municipality_code": self.code})  # fmt: skip
        elif self.rule == "presence_obligation":
            zones.append({"zone_id": "curfew", "kind": "presence_obligation",
                          "label": "home, all day", "schedule": [
                              {"days": EVERY_DAY, "start": "00:00", "end": "00:00"}],
                          "geometry": {"type": "Point", "coordinates": [lon, lat]},
                          "radius_m": 150})  # fmt: skip
        elif self.rule == "contact_ban":
            bans.append({"protected_person_id": f"V-SIM-{self.tag}", "min_distance_m": 500,
                         "warning_distance_m": 1000})  # fmt: skip
        return {
            "event_id": f"{self.order_id}-v1", "event_type": "order.issued",
            "occurred_at": _iso(self.start - 86400),
            "order": {
                "order_id": self.order_id, "version": 1, "valid_from": _iso(self.start - 86400),
                "valid_until": None,
                "subject": {"person_id": f"P-SIM-{self.tag}", "device_id": self.subject_device},
                "protected_persons": [{
                    "person_id": f"V-SIM-{self.tag}",
                    "device_id": self.victim_device if self.rule == "contact_ban" else None}],
                "region": self.region, "probation_officer_id": f"po-{self.region}",
                "risk_level": ("high", "medium", "low")[self.n % 3],
                "case_owner": {"name": f"Casusregisseur {self.n:05d}",
                               "organisation": f"Veilig Thuis {self.region}",
                               "phone": "+31 88 000 0000"},
                "contact_bans": bans, "zones": zones,
            },
        }  # fmt: skip

    def path(self, duration_s: float) -> list[tuple[float, float, float]]:
        """(seconds, x, y) of the subject: in from 3 km west, through the target and out
        east (location ban, contact ban); in from outside the municipality (area ban); far
        from home all along (presence obligation); near home but outside it otherwise."""
        steps = int(duration_s // self.interval_s) + 1
        edge = self._edge_east() if self.rule == "area_ban" else 0.0
        points = []
        for i in range(steps):
            s = i * self.interval_s
            f = s / duration_s
            if self.rule in ("location_ban", "contact_ban"):
                x, y = -3000 + 4000 * f, 0.0  # at the target at three quarters of the way
            elif self.rule == "area_ban":  # from 300 m outside the boundary to 1.5 km inside
                x, y = edge + 300 - 1800 * f, 0.0
            elif self.rule == "presence_obligation":
                x, y = 2500.0 + 200 * math.sin(f * 6), 1000.0
            else:
                x, y = 1200.0 + 100 * math.sin(f * 6), 800.0  # out of the zone and its buffer
            points.append((s, x, y))
        return points

    def _edge_east(self) -> float:
        """Metres east of home to where the municipality ends (the last boundary crossing of
        a ray due east), found in 25 m steps."""
        shape = shapely.geometry.shape(municipalities.geometry(self.code))
        shapely.prepare(shape)
        reach = (float(shape.bounds[2]) - self.home[1]) * self.plane.kx + 100
        edge, x = 0.0, 0.0
        while x < reach:
            lat, lon = self.at(x, 0)
            if shapely.contains_xy(shape, lon, lat):
                edge = x
            x += 25
        return edge


def plan(
    cases: int,
    *,
    seed: int = 1,
    start: float,
    duration_s: float = 600.0,
    interval_s: float = 10.0,
    noise: Noise | None = None,
    tag: str = "",
) -> Plan:
    """`cases` orders, one rule each in turn (every rule once `cases` >= 7), over
    `duration_s` seconds from `start` (epoch seconds), a fix every `interval_s` per device.
    `tag` goes into every order and device id, so that runs against one cluster stay apart."""
    noise = noise or Noise()
    rng = random.Random(seed)
    result = Plan(start=start, duration_s=duration_s)
    for n in range(cases):
        case = _Case(n, RULES[n % len(RULES)], rng, start, interval_s, tag)
        result.orders.append(case.order_event())
        result.records += _records_of(case, duration_s, noise)
        result.expected.append(Expected(case.order_id, case.rule, _breach_after(case, duration_s)))
    result.records.sort(key=lambda r: (r.at_s, r.key))
    return result


def _breach_after(case: _Case, duration_s: float) -> float:
    if case.rule == "location_ban":
        return duration_s * 0.55  # the warning buffer (500 m out) at 62.5 % of the way
    if case.rule == "contact_ban":
        return duration_s * 0.4  # the warning distance (1 km) at half way
    if case.rule == "signal_lost":
        return duration_s / 3  # it goes dark a third of the way through
    return 0.0


def _records_of(case: _Case, duration_s: float, noise: Noise) -> list[Record]:
    rng = case.rng
    records: list[Record] = []
    dark_after = duration_s / 3 if case.rule == "signal_lost" else math.inf
    for s, x, y in case.path(duration_s):
        if s > dark_after:
            break
        if s > 0 and rng.random() < noise.dropped:
            continue  # out of coverage: the fix never comes
        accuracy = rng.uniform(4.0, 15.0)
        lat, lon = case.at(x + rng.gauss(0, accuracy / 2), y + rng.gauss(0, accuracy / 2))
        battery = 80 if case.rule != "battery_low" else max(5, 30 - int(s / duration_s * 40))
        value = {"device_id": case.subject_device, "ts": _iso(case.start + s), "lat": lat,
                 "lon": lon, "accuracy_m": round(accuracy, 1), "source": "gnss",
                 "battery_pct": battery}  # fmt: skip
        # buffered while out of coverage and delivered later, at most a tenth of the run late
        delay = min(noise.late_by_s, duration_s / 10)
        sent_at = s + (delay if s > 0 and rng.random() < noise.late else 0.0)
        records.append(Record(sent_at, "positions.v1", case.subject_device, value))
        if rng.random() < noise.duplicated:
            records.append(Record(sent_at + 0.5, "positions.v1", case.subject_device, value))
        if case.rule == "contact_ban":  # the victim stays home, at the target
            vlat, vlon = case.at(rng.gauss(0, 3), rng.gauss(0, 3))
            records.append(Record(s, "positions.v1", case.victim_device, {
                "device_id": case.victim_device, "ts": _iso(case.start + s), "lat": vlat,
                "lon": vlon, "accuracy_m": 8.0}))  # fmt: skip
    if case.rule == "tamper":
        t = duration_s / 2
        records.append(Record(t, "device-events.v1", case.subject_device, {
            "device_id": case.subject_device, "ts": _iso(case.start + t),
            "type": "strap_tamper"}))  # fmt: skip
    return records
