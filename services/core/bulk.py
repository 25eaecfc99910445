"""The bulk decision of a `Partition` batch, compiled: which signals are quiet, in one pass.

A quiet signal decides nothing (see services/core/batch.py); this pass finds them and moves
their tracks, so only the others reach `evaluate`. It walks the batch in arrival order and moves
each quiet fix's track in the columns at once, so a later signal of the same device sees it as
its previous fix, exactly as `evaluate` one signal at a time would. Once a signal of an order is
not quiet, nothing after it of that order is: the scalar path takes them all, in order.

An order with open zone episodes (hot) is in `evaluate`'s hands only where a fix could change
what an alert says. The pass classifies such a fix against each zone as
services.core.engine.zone_level does, and finds it quiet (steady) when every zone without an
episode stays clear and every episode stays as it is: a certain breach that stays certain and not
yet critical, a warning that stays a warning of the same certainty, and so on
(`_steady_in`). Such a fix only moves the episodes' counters, which this pass does in the zone
rows; the order's state objects catch up from the columns when next read (services/core/batch.py).
A breach that goes on for minutes then costs no `evaluate` per fix, nor any Python.

numba compiles it to machine code (`geo.edges.compiled`; `compile_now` does it before the first
batch). In numpy it took ~150 calls over the batch's arrays, six of them stable sorts to group
signals by order and device, and gathered every field of every row whether a fix needed it or
not: ~1 us a fix at 100k orders, a third of the batch path. A loop per signal needs no grouping
and stops reading a signal's zones at the first one it is near.

Every threshold keeps `QUIET_MARGIN` away, as the numpy form did, so a rounding difference from
the scalar path's arithmetic can only send a fix to the scalar path, never change a decision.
"""

from __future__ import annotations

import math
from array import array
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from geo.edges import (
    PREFETCH_AHEAD,
    compiled,
    prefetch_row,
    signed_distance_to_edges,
    signed_distance_to_rings,
    write_ring_edges,
)
from geo.projection import fast_distance_m, wrap_longitude_delta
from services.core.hashrows import HashRows
from services.core.model import Fix
from services.core.schedule import minute_of_week
from services.core.signal_columns import id_hash, read_signals

QUIET_MARGIN = 1e-6

# The layout of the partition's columns, a matrix per dtype, each row-major in the order named
# here (`batch._Columns` groups a spec's columns by dtype in the spec's order).
TRACK_OPTIONAL = ("last_t", "good_t", "last_rx", "last_fix_rx", "battery_pct")  # NaN: None
TRACK_PLAIN = ("lat", "lon", "accuracy_m", "good_lat", "good_lon", "good_accuracy_m")
TRACK_FLOATS = TRACK_OPTIONAL + TRACK_PLAIN
SLOT_BOOLS = ("outlier", "watched")
ORDER_FLOATS = ("valid_from", "valid_until", "watch_since")
ORDER_INTS = (
    "subject_slot", "subject_hash", "partner_slot", "zone_start", "zone_count",
    "other_episodes",  # open episodes that are not of a zone (contact, signal, battery, tamper)
)  # fmt: skip
# `stale`: a hot order whose state objects lag its columns, moved since by steady fixes
ORDER_BOOLS = ("revoked", "ended", "hot", "stale")
# The open episode's `breach_since` (NaN: none, or not a breach) and its counters, which a
# steady fix moves (services.core.engine.count_observation): NaN for None.
EPISODE_FLOATS = ("breach_since", "last_t", "possible_since", "outside_since")
ZONE_FLOATS = (
    "lat0", "lon0", "kx", "ky", "radius_m", "minx", "miny", "maxx", "maxy", "buffer",
    *EPISODE_FLOATS,
)  # fmt: skip
# Each with the fill of new rows. A polygon's edges go into the edge table when a fix first
# comes near its box: until then `edge_count` is 0 and the pass asks for them.
# `episode`: what the zone's open episode says, as an EPISODE_* code (services/core/batch.py
# writes it after the scalar path).
ZONE_INTS = {
    "schedule_row": -1, "edge_start": 0, "edge_count": 0, "episode": 0, "possible_count": 0
}  # fmt: skip
ZONE_BOOLS = ("presence", "polygon")
EDGE_FLOATS = ("x1", "y1", "x2", "y2")

NO_SLOT = -1
MANY_SLOTS = -2  # more than one protected device watched: always the scalar path

# Per order, while a batch is decided (`order_marks`).
UNDECIDED, SLOW, DEFERRED = 0, 1, 2

# A zone's open episode, as far as a steady fix can leave it alone: none, one this pass cannot
# carry (in its dwell with nothing sent yet, or any other doubt), or its severity and certainty.
EPISODE_NONE, EPISODE_UNSTEADY = 0, -1
EPISODE_CODES: dict[tuple[str | None, str | None], int] = {
    ("warning", "possible"): 1, ("warning", "certain"): 2,
    ("breach", "possible"): 3, ("breach", "certain"): 4,
    ("critical", "possible"): 5, ("critical", "certain"): 6,
}  # fmt: skip
_WARNING_POSSIBLE = 1
_BREACH_POSSIBLE, _CRITICAL_POSSIBLE = 3, 5
_CERTAIN_CODES = (4, 6)  # a certain breach, or a critical one
# Zones a steady fix's mask can name; an order with more takes the scalar path near them.
MASK_ZONES = 62

# numba reads module globals as constants at compile time.
_LAST_T, _GOOD_T = TRACK_FLOATS.index("last_t"), TRACK_FLOATS.index("good_t")
_LAST_RX, _LAST_FIX_RX = TRACK_FLOATS.index("last_rx"), TRACK_FLOATS.index("last_fix_rx")
_BATTERY = TRACK_FLOATS.index("battery_pct")
_LAT, _LON, _ACCURACY = (TRACK_FLOATS.index(n) for n in ("lat", "lon", "accuracy_m"))
_GOOD_LAT, _GOOD_LON, _GOOD_ACCURACY = (
    TRACK_FLOATS.index(n) for n in ("good_lat", "good_lon", "good_accuracy_m")
)
_OUTLIER, _WATCHED = SLOT_BOOLS.index("outlier"), SLOT_BOOLS.index("watched")
_VALID_FROM, _VALID_UNTIL = ORDER_FLOATS.index("valid_from"), ORDER_FLOATS.index("valid_until")
_SUBJECT_SLOT, _PARTNER_SLOT = ORDER_INTS.index("subject_slot"), ORDER_INTS.index("partner_slot")
_SUBJECT_HASH = ORDER_INTS.index("subject_hash")
_ZONE_START, _ZONE_COUNT = ORDER_INTS.index("zone_start"), ORDER_INTS.index("zone_count")
_REVOKED, _HOT = ORDER_BOOLS.index("revoked"), ORDER_BOOLS.index("hot")
_Z_LAT0, _Z_LON0, _Z_KX, _Z_KY, _Z_RADIUS = range(5)
_Z_MINX, _Z_MINY, _Z_MAXX, _Z_MAXY, _Z_BUFFER, _Z_BREACH_SINCE = range(5, 11)
_Z_LAST_T, _Z_POSSIBLE_SINCE, _Z_OUTSIDE_SINCE = range(11, 14)
assert ZONE_FLOATS.index("radius_m") == _Z_RADIUS
assert ZONE_FLOATS.index("breach_since") == _Z_BREACH_SINCE
assert ZONE_FLOATS.index("outside_since") == _Z_OUTSIDE_SINCE
_Z_SCHEDULE, _Z_EDGE_START, _Z_EDGE_COUNT, _Z_EPISODE, _Z_POSSIBLE_COUNT = range(5)
assert tuple(ZONE_INTS) == (
    "schedule_row", "edge_start", "edge_count", "episode", "possible_count"
)  # fmt: skip
_OTHER_EPISODES = ORDER_INTS.index("other_episodes")
_Z_PRESENCE, _Z_POLYGON = ZONE_BOOLS.index("presence"), ZONE_BOOLS.index("polygon")

# What a zone check found: nothing for the scalar path (clear of every zone, or steady in the
# zones with an episode), something for it, or a polygon without its edges yet.
_STEADY, _NEAR, _MISSING = 0, 1, 2
# A fix's level against a zone (services.core.engine), or _DOUBT within QUIET_MARGIN of a limit
_DOUBT, _L_CLEAR, _L_WARNING, _L_POSSIBLE, _L_CERTAIN = -1, 0, 1, 2, 3

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]


@compiled
def _minute_of_week(t: float, hour0: int, offsets: F64) -> int:
    """services.core.schedule.local_minute_of_week, with the UTC offset of each hour from
    `hour0` on looked up in `offsets`; -1 for an hour outside the table."""
    if not hour0 * 3600.0 <= t < (hour0 + len(offsets)) * 3600.0:
        return -1  # compared as floats first: a time far out would overflow an int
    minute: int = minute_of_week(t + offsets[math.floor(t / 3600.0) - hour0])
    return minute


@compiled
def _level(distance: float, accuracy: float, buffer: float) -> tuple[int, bool]:
    """(level, warning certain) of a disc by the signed distance of its centre to the forbidden
    region's edge, as services.core.engine.zone_level classifies it; _DOUBT when within
    QUIET_MARGIN of a limit, where rounding could tip it."""
    m = QUIET_MARGIN
    if distance >= accuracy + buffer + m:
        return _L_CLEAR, False
    if distance <= -accuracy - m:
        return _L_CERTAIN, False
    if -accuracy + m < distance < accuracy - m:
        return _L_POSSIBLE, False
    if accuracy + m <= distance < accuracy + buffer - m:
        if distance + accuracy <= buffer - m:
            return _L_WARNING, True
        if distance + accuracy > buffer + m:
            return _L_WARNING, False
    return _DOUBT, False


@compiled
def _steady_in(
    episode: int, level: int, warning_certain: bool, t: float, breach_since: float,
    outside_since: float, critical_after_s: float, hysteresis_s: float,
) -> bool:  # fmt: skip
    """A fix at `level` leaves the zone's open episode as it is but for its counters: no
    alert, no opening, closing or escalation (services.core.engine.step_episode)."""
    if episode == EPISODE_NONE:
        return level == _L_CLEAR
    if episode == EPISODE_UNSTEADY or level == _DOUBT:
        return False
    if level == _L_CLEAR:
        # Clear of an episode sent: its hysteresis runs (from this fix, if it is the first
        # clear one) and closes it once over, which the scalar path does.
        since = t if outside_since != outside_since else outside_since
        return t - since < hysteresis_s - QUIET_MARGIN
    if level == _L_WARNING:  # a warning never lowers what was sent, but may raise its certainty
        return episode != _WARNING_POSSIBLE or not warning_certain
    if episode < _BREACH_POSSIBLE:
        return False  # a warning rising to a breach
    if level == _L_CERTAIN and episode not in _CERTAIN_CODES:
        return False  # a possible breach becoming certain
    # A breach at this fix stays a breach, or stays critical, by its age.
    age = t - breach_since  # NaN without a start: never steady
    if episode >= _CRITICAL_POSSIBLE:
        return age >= critical_after_s + QUIET_MARGIN
    return age < critical_after_s - QUIET_MARGIN


@compiled
def _zones_reached(
    zone_f: F64, zone_i: I64, zone_b: Bool, edges: F64, masks: Bool,
    first: int, count: int, t: float, lat: float, lon: float, accuracy: float,
    hour0: int, offsets: F64, critical_after_s: float, hysteresis_s: float,
) -> tuple[int, int, int]:  # fmt: skip
    """What a subject fix in force does to the zones in the rows from `first`: (_STEADY, the
    mask of zones it is at least possibly inside, the mask of those with an episode it is
    clear of) when it leaves every zone without an episode clear and every open episode as it
    is but for its counters; (_NEAR, 0, 0) when the scalar path must decide; (_MISSING, its
    row, 0) for a polygon whose edges are not in the table yet."""
    minute = -2  # not looked up yet
    mask = clear = 0
    for z in range(first, first + count):
        episode = zone_i[z, _Z_EPISODE]
        schedule = zone_i[z, _Z_SCHEDULE]
        level, warning_certain = _L_CLEAR, False
        in_force_now = True
        if schedule >= 0:
            if minute == -2:
                minute = _minute_of_week(t, hour0, offsets)
            if minute < 0:
                return _NEAR, 0, 0  # an hour the table does not cover: let the scalar path look
            in_force_now = masks[schedule, minute]  # if not: clear, wherever the fix is
        if in_force_now:
            dx = wrap_longitude_delta(lon - zone_f[z, _Z_LON0]) * zone_f[z, _Z_KX]
            dy = (lat - zone_f[z, _Z_LAT0]) * zone_f[z, _Z_KY]
            buffer = zone_f[z, _Z_BUFFER]
            reach = accuracy + buffer + QUIET_MARGIN
            presence = zone_b[z, _Z_PRESENCE]
            radius = zone_f[z, _Z_RADIUS]
            distance = math.nan  # to the edge, negative inside; NaN: not known
            if radius == radius:  # a circle
                distance = math.sqrt(dx * dx + dy * dy) - radius
            elif not presence and (
                # Outside the box by `reach` bounds the distance to the polygon from below; NaN
                # (an unknown shape) never is.
                zone_f[z, _Z_MINX] - dx >= reach
                or dx - zone_f[z, _Z_MAXX] >= reach
                or zone_f[z, _Z_MINY] - dy >= reach
                or dy - zone_f[z, _Z_MAXY] >= reach
            ):
                distance = math.inf
            elif zone_b[z, _Z_POLYGON]:
                edge_count = zone_i[z, _Z_EDGE_COUNT]
                if edge_count == 0:
                    return _MISSING, z, 0
                start = zone_i[z, _Z_EDGE_START]
                distance = signed_distance_to_edges(edges, start, edge_count, dx, dy)
            if distance != distance:
                return _NEAR, 0, 0  # an unknown shape: the scalar path
            # Being outside is the breach of a presence zone: the disc against its complement.
            level, warning_certain = _level(-distance if presence else distance, accuracy, buffer)
        if not _steady_in(
            episode, level, warning_certain, t, zone_f[z, _Z_BREACH_SINCE],
            zone_f[z, _Z_OUTSIDE_SINCE], critical_after_s, hysteresis_s,
        ):  # fmt: skip
            return _NEAR, 0, 0
        if level >= _L_POSSIBLE or (level == _L_CLEAR and episode != EPISODE_NONE):
            if z - first >= MASK_ZONES:
                return _NEAR, 0, 0
            if level == _L_CLEAR:
                clear |= 1 << (z - first)
            else:
                mask |= 1 << (z - first)
    return _STEADY, mask, clear


@compiled
def _pairs_in_time(
    order_i: I64, slot_f: F64, slot_b: Bool, i: int, s: int, is_subject: bool, t: float,
    contact_window_s: float,
) -> bool:  # fmt: skip
    """The fix pairs with the other device of a contact ban within the contact window (the
    partner's newest fix is in the columns: earlier quiet fixes of the batch were moved there)."""
    if is_subject:
        partner = order_i[i, _PARTNER_SLOT]  # MANY_SLOTS: several, the scalar path looks
        if partner == NO_SLOT:
            return False
    elif slot_b[s, _WATCHED]:
        partner = order_i[i, _SUBJECT_SLOT]
    else:
        return False
    paired: bool = (
        partner < 0 or abs(t - slot_f[partner, _LAST_T]) <= contact_window_s + QUIET_MARGIN
    )
    return paired


@compiled
def subject_slots(
    order: I64, device_hash: I64, is_fix: Bool, subject: Bool, order_i: I64,
    slot: I64, forced_slow: Bool,
) -> int:  # fmt: skip
    """Each signal's slot where it comes from its order's subject device (by the device id's
    hash), else NO_SLOT for the caller to look up; and whether it must take the scalar path for
    what it is: a health event, or a role that does not match its device (a subject fix from
    another device, or the reverse: legal but odd). Returns how many slots are left to look
    up. One compiled pass: the dozen numpy calls it replaces cost ~20 us a partition batch of
    live traffic, a few signals each."""
    left = 0
    count = len(order)
    for j in range(count):
        if j + PREFETCH_AHEAD < count:
            prefetch_row(order_i, order[j + PREFETCH_AHEAD])
        i = order[j]
        from_subject = order_i[i, _SUBJECT_HASH] == device_hash[j]
        if from_subject:
            slot[j] = order_i[i, _SUBJECT_SLOT]
        else:
            slot[j] = NO_SLOT
            left += 1
        forced_slow[j] = not is_fix[j] or subject[j] != from_subject
    return left


@compiled
def _prefetch_order(
    order_f: F64, order_i: I64, order_b: Bool, slot_f: F64, slot_b: Bool, order: I64,
    slot: I64, j: int,
) -> None:  # fmt: skip
    """Ask early for the order and track rows signal `j` will read (see `prefetch_row`)."""
    i = order[j]
    prefetch_row(order_f, i)
    prefetch_row(order_i, i)
    prefetch_row(order_b, i)
    prefetch_row(slot_f, slot[j])
    prefetch_row(slot_b, slot[j])


@compiled
def _prefetch_zones(order_i: I64, zone_f: F64, zone_i: I64, zone_b: Bool, i: int) -> None:
    """Ask early for the zone rows of order `i`."""
    first = order_i[i, _ZONE_START]
    for z in range(first, first + order_i[i, _ZONE_COUNT]):
        prefetch_row(zone_f, z)
        prefetch_row(zone_i, z)
        prefetch_row(zone_b, z)


@compiled
def decide(
    positions: I64, order: I64, slot: I64, forced_slow: Bool, subject: Bool,
    t: F64, lat: F64, lon: F64, accuracy: F64, battery: F64, now: float,
    order_f: F64, order_i: I64, order_b: Bool, slot_f: F64, slot_b: Bool,
    zone_f: F64, zone_i: I64, zone_b: Bool, edges: F64, masks: Bool, hour0: int, offsets: F64,
    max_future_skew_s: float, battery_low_pct: float, max_speed_mps: float,
    contact_window_s: float, critical_after_s: float, hysteresis_s: float,
    slow: Bool, steady: Bool, order_marks: npt.NDArray[np.int8], deferred: I64, missing: I64,
) -> tuple[int, int]:  # fmt: skip
    """Decide the signals at `positions` (ascending) of a batch, and move the tracks of the
    quiet ones. Sets `slow` for every signal the scalar path must take. A quiet signal of an
    order with open zone episodes (hot) leaves them as they are but for their counters, which
    move in the zone rows: `steady` is set for it (the caller marks the order's state objects
    stale).

    A signal of an order that reaches a polygon without its edges is set aside, with
    everything after it of that order, in `deferred`, and (zone row, order row) in `missing`:
    the caller adds the edges and runs this again on `deferred`. Returns both counts."""
    m = QUIET_MARGIN
    n_deferred = n_missing = 0
    count = len(positions)
    for p in range(count):
        if p + PREFETCH_AHEAD < count:
            _prefetch_order(order_f, order_i, order_b, slot_f, slot_b, order, slot,
                            positions[p + PREFETCH_AHEAD])  # fmt: skip
        if p + PREFETCH_AHEAD // 2 < count:
            # its order row asked for half the distance ago: now the zone rows it names
            _prefetch_zones(
                order_i, zone_f, zone_i, zone_b, order[positions[p + PREFETCH_AHEAD // 2]]
            )
        j = positions[p]
        i = order[j]
        mark = order_marks[i]
        if mark == SLOW:
            slow[j] = True
            continue
        if mark == DEFERRED:
            deferred[n_deferred] = j
            n_deferred += 1
            continue
        s, tj, accuracy_j = slot[j], t[j], accuracy[j]
        lat_j, lon_j = lat[j], lon[j]
        in_force = (
            not order_b[i, _REVOKED]
            and tj >= order_f[i, _VALID_FROM]
            and tj < order_f[i, _VALID_UNTIL]
        )
        # The contract checks of `check_signal`: a signal that breaks one is rejected there.
        hot = order_b[i, _HOT]
        quiet = not (
            forced_slow[j]
            or (hot and order_i[i, _OTHER_EPISODES] != 0)
            or not (math.isfinite(tj) and tj - now <= max_future_skew_s)
            or not (math.isfinite(lat_j) and -90.0 <= lat_j <= 90.0)
            or not (math.isfinite(lon_j) and -180.0 <= lon_j <= 180.0)
            or not (math.isfinite(accuracy_j) and accuracy_j > 0.0)
            or (subject[j] and in_force and battery[j] < battery_low_pct)
            or slot_f[s, _LAST_T] > tj  # late: the scalar path keeps it as evidence
        )
        if quiet:
            # Too fast from the device's last good fix (NaN when it has none: never too fast).
            dt = tj - slot_f[s, _GOOD_T]
            if dt < 1.0:
                dt = 1.0
            jump = (
                fast_distance_m(lat_j, lon_j, slot_f[s, _GOOD_LAT], slot_f[s, _GOOD_LON])
                - slot_f[s, _GOOD_ACCURACY] - accuracy_j
            )  # fmt: skip
            quiet = not jump > max_speed_mps * dt - m
        zones_at = 0  # the steady fix's mask of zones it is at least possibly inside
        zones_clear = 0  # and of those with an episode it is clear of
        if quiet and subject[j] and in_force:
            status, zones_at, zones_clear = _zones_reached(
                zone_f, zone_i, zone_b, edges, masks,
                order_i[i, _ZONE_START], order_i[i, _ZONE_COUNT],
                tj, lat_j, lon_j, accuracy_j, hour0, offsets, critical_after_s, hysteresis_s,
            )  # fmt: skip
            if status == _MISSING:
                order_marks[i] = DEFERRED
                deferred[n_deferred] = j
                n_deferred += 1
                missing[n_missing, 0], missing[n_missing, 1] = zones_at, i
                n_missing += 1
                continue
            quiet = status == _STEADY
        if quiet and in_force:
            quiet = not _pairs_in_time(
                order_i, slot_f, slot_b, i, s, subject[j], tj, contact_window_s
            )
        if not quiet:
            order_marks[i] = SLOW
            slow[j] = True
            continue
        # What `evaluate` does to the track of a quiet fix: it is also the newest good fix.
        slot_f[s, _LAST_T] = slot_f[s, _GOOD_T] = tj
        slot_f[s, _LAT] = slot_f[s, _GOOD_LAT] = lat_j
        slot_f[s, _LON] = slot_f[s, _GOOD_LON] = lon_j
        slot_f[s, _ACCURACY] = slot_f[s, _GOOD_ACCURACY] = accuracy_j
        slot_b[s, _OUTLIER] = False
        slot_f[s, _LAST_RX] = slot_f[s, _LAST_FIX_RX] = now
        if subject[j] and in_force and battery[j] == battery[j]:
            slot_f[s, _BATTERY] = battery[j]
        if hot:
            steady[j] = True
            if subject[j] and in_force:
                _count_observations(zone_f, zone_i, order_i[i, _ZONE_START],
                                    order_i[i, _ZONE_COUNT], tj, zones_at, zones_clear)  # fmt: skip
    return n_deferred, n_missing


@compiled
def _count_observations(
    zone_f: F64, zone_i: I64, first: int, count: int, t: float, zones_at: int,
    zones_clear: int,
) -> None:  # fmt: skip
    """What a steady fix at `t` does to the open episodes of the zones in the rows from
    `first` (services.core.engine.count_observation, and since when it is outside),
    `zones_at` the mask of those it is at least possibly inside, `zones_clear` of those it is
    clear of."""
    for k in range(count):
        z = first + k
        if zone_i[z, _Z_EPISODE] == EPISODE_NONE:
            continue
        zone_f[z, _Z_LAST_T] = t
        if zones_at >> k & 1:
            if math.isnan(zone_f[z, _Z_POSSIBLE_SINCE]):
                zone_f[z, _Z_POSSIBLE_SINCE] = t
            zone_i[z, _Z_POSSIBLE_COUNT] += 1
        else:
            zone_f[z, _Z_POSSIBLE_SINCE] = math.nan
            zone_i[z, _Z_POSSIBLE_COUNT] = 0
        if not zones_clear >> k & 1:
            zone_f[z, _Z_OUTSIDE_SINCE] = math.nan
        elif math.isnan(zone_f[z, _Z_OUTSIDE_SINCE]):
            zone_f[z, _Z_OUTSIDE_SINCE] = t


def compile_now() -> None:
    """Compile `decide` for the argument types a `Partition` passes, the reading of a batch's
    columns, and the ring distance and edge copy for the scalar path's and the edge table's
    calls (or load them from numba's cache) before a batch needs them: ~2 s the first time,
    ~0.4 s from the cache."""
    f64 = np.zeros((1, 1), dtype=np.float64)
    i64 = np.zeros((1, 1), dtype=np.int64)
    flag = np.zeros((1, 1), dtype=np.bool_)
    no_f64, no_i64, no_flag = np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.bool_)
    subject_slots(no_i64, no_i64, no_flag, no_flag, i64, no_i64, no_flag)
    decide(
        no_i64, no_i64, no_i64, no_flag, no_flag, no_f64, no_f64, no_f64, no_f64, no_f64, 0.0,
        f64, i64, flag, f64, flag, f64, i64, flag, f64, flag, 0, no_f64, 0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, no_flag, no_flag, np.zeros(0, np.int8), no_i64, np.zeros((0, 2), np.int64),
    )  # fmt: skip
    ring = array("d", (0.0, 0.0, 1.0, 0.0, 0.0, 0.0))
    signed_distance_to_rings([ring], 0.0, 0.0)  # as shapes do
    write_ring_edges(np.zeros((2, 4)), 0, ring)  # as a polygon's first time near a fix does
    HashRows().find(no_i64)  # as every batch does, for its orders' rows
    # as every batch's columns are read; an int time is read from its object, after a skip
    pairs = [("", Fix(device_id="", role="subject", person_id="", t=t, lat=0.0, lon=0.0,
                      accuracy_m=1.0)) for t in (0.0, 0)]  # fmt: skip
    read_signals(pairs, [signal for _, signal in pairs])
    id_hash("")


def compiled_versions() -> int:
    """How many argument-type versions of `decide` this process has compiled: one, unless a
    caller passes other types than `compile_now` (each costs a compile in a batch)."""
    return len(cast(Any, decide).signatures)
