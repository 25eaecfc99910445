"""The bulk decision of a `Partition` batch, compiled: which signals are quiet, in one pass.

A quiet signal decides nothing (see services/core/batch.py); this pass finds them and moves
their tracks, so only the others reach `evaluate`. It walks the batch in arrival order and moves
each quiet fix's track in the columns at once, so a later signal of the same device sees it as
its previous fix, exactly as `evaluate` one signal at a time would. Once a signal of an order is
not quiet, nothing after it of that order is: the scalar path takes them all, in order.

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
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from geo.edges import compiled, signed_distance_to_edges

QUIET_MARGIN = 1e-6

# The layout of the partition's columns, a matrix per dtype, each row-major in the order named
# here (`batch._Columns` groups a spec's columns by dtype in the spec's order).
TRACK_OPTIONAL = ("last_t", "good_t", "last_rx", "last_fix_rx", "battery_pct")  # NaN: None
TRACK_PLAIN = ("lat", "lon", "accuracy_m", "good_lat", "good_lon", "good_accuracy_m")
TRACK_FLOATS = TRACK_OPTIONAL + TRACK_PLAIN
SLOT_BOOLS = ("outlier", "watched")
ORDER_FLOATS = ("valid_from", "valid_until", "watch_since")
ORDER_INTS = ("subject_slot", "subject_hash", "partner_slot", "zone_start", "zone_count")
ORDER_BOOLS = ("revoked", "ended", "hot")
ZONE_FLOATS = ("lat0", "lon0", "kx", "ky", "radius_m", "minx", "miny", "maxx", "maxy", "buffer")
# Each with the fill of new rows. A small polygon's edges go into the edge table when a fix
# first comes near its box: until then `edge_count` is 0 and the pass asks for them.
ZONE_INTS = {"schedule_row": -1, "edge_start": 0, "edge_count": 0}
ZONE_BOOLS = ("presence", "small_polygon")
EDGE_FLOATS = ("x1", "y1", "x2", "y2")

NO_SLOT = -1
MANY_SLOTS = -2  # more than one protected device watched: always the scalar path

# Per order, while a batch is decided (`order_marks`).
UNDECIDED, SLOW, DEFERRED = 0, 1, 2

_DEG = math.pi / 180.0
_EARTH_RADIUS_M = 6_371_008.8  # geo.projection.EARTH_RADIUS_M: the same formula, inlined
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (services.core.schedule)

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
_ZONE_START, _ZONE_COUNT = ORDER_INTS.index("zone_start"), ORDER_INTS.index("zone_count")
_REVOKED, _HOT = ORDER_BOOLS.index("revoked"), ORDER_BOOLS.index("hot")
_Z_LAT0, _Z_LON0, _Z_KX, _Z_KY, _Z_RADIUS = range(5)
_Z_MINX, _Z_MINY, _Z_MAXX, _Z_MAXY, _Z_BUFFER = range(5, 10)
assert ZONE_FLOATS.index("radius_m") == _Z_RADIUS and ZONE_FLOATS.index("buffer") == _Z_BUFFER
_Z_SCHEDULE, _Z_EDGE_START, _Z_EDGE_COUNT = range(3)
assert tuple(ZONE_INTS) == ("schedule_row", "edge_start", "edge_count")
_Z_PRESENCE, _Z_SMALL = ZONE_BOOLS.index("presence"), ZONE_BOOLS.index("small_polygon")

# What a zone check found: clear of every zone, near one, or a small polygon without its edges
# yet (any value >= 0: that zone's row).
_CLEAR, _NEAR = -1, -2

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]


@compiled
def _wrap_longitude_delta(delta: float) -> float:
    if delta > 180.0 or delta < -180.0:
        return (delta + 180.0) % 360.0 - 180.0
    return delta


@compiled
def _fast_distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """geo.projection.fast_distance_m, the same operations in the same order."""
    kx = math.cos((lat1 + lat2) * 0.5 * _DEG)
    dx = _wrap_longitude_delta(lon2 - lon1) * kx
    dy = lat2 - lat1
    return math.sqrt(dx * dx + dy * dy) * _EARTH_RADIUS_M * _DEG


@compiled
def _minute_of_week(t: float, hour0: int, offsets: F64) -> int:
    """services.core.schedule.local_minute_of_week, with the UTC offset of each hour from
    `hour0` on looked up in `offsets`; -1 for an hour outside the table."""
    if not hour0 * 3600.0 <= t < (hour0 + len(offsets)) * 3600.0:
        return -1  # compared as floats first: a time far out would overflow an int
    k = math.floor(t / 3600.0) - hour0
    local_minutes = math.floor((t + offsets[k]) / 60.0)
    day = local_minutes // 1440
    minute: int = ((day + _EPOCH_WEEKDAY) % 7) * 1440 + local_minutes % 1440
    return minute


@compiled
def _zones_reached(
    zone_f: F64, zone_i: I64, zone_b: Bool, edges: F64, masks: Bool,
    first: int, count: int, t: float, lat: float, lon: float, accuracy: float,
    hour0: int, offsets: F64,
) -> int:  # fmt: skip
    """_CLEAR when the fix's disc and warning buffer keep clear of every zone in the rows from
    `first` (the disc deep inside, for a presence zone), _NEAR otherwise, or the row of a small
    polygon whose edges are not in the table yet."""
    minute = -2  # not looked up yet
    for z in range(first, first + count):
        schedule = zone_i[z, _Z_SCHEDULE]
        if schedule >= 0:
            if minute == -2:
                minute = _minute_of_week(t, hour0, offsets)
            if minute < 0:
                return _NEAR  # an hour the table does not cover: let the scalar path look
            if not masks[schedule, minute]:
                continue  # not in force now: clear, wherever the fix is
        dx = _wrap_longitude_delta(lon - zone_f[z, _Z_LON0]) * zone_f[z, _Z_KX]
        dy = (lat - zone_f[z, _Z_LAT0]) * zone_f[z, _Z_KY]
        reach = accuracy + zone_f[z, _Z_BUFFER] + QUIET_MARGIN
        presence = zone_b[z, _Z_PRESENCE]
        radius = zone_f[z, _Z_RADIUS]
        if radius == radius:  # a circle
            distance = math.sqrt(dx * dx + dy * dy) - radius
            clear = distance <= -reach if presence else distance >= reach
        else:
            # Outside the box by `reach` bounds the distance to the polygon from below; NaN
            # (an unknown shape) is never clear.
            clear = not presence and (
                zone_f[z, _Z_MINX] - dx >= reach
                or dx - zone_f[z, _Z_MAXX] >= reach
                or zone_f[z, _Z_MINY] - dy >= reach
                or dy - zone_f[z, _Z_MAXY] >= reach
            )
            if not clear and zone_b[z, _Z_SMALL]:
                edge_count = zone_i[z, _Z_EDGE_COUNT]
                if edge_count == 0:
                    return z
                distance = signed_distance_to_edges(
                    edges, zone_i[z, _Z_EDGE_START], edge_count, dx, dy
                )
                clear = distance <= -reach if presence else distance >= reach
        if not clear:
            return _NEAR
    return _CLEAR


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
def decide(
    positions: I64, order: I64, slot: I64, forced_slow: Bool, subject: Bool,
    t: F64, lat: F64, lon: F64, accuracy: F64, battery: F64, now: float,
    order_f: F64, order_i: I64, order_b: Bool, slot_f: F64, slot_b: Bool,
    zone_f: F64, zone_i: I64, zone_b: Bool, edges: F64, masks: Bool, hour0: int, offsets: F64,
    max_future_skew_s: float, battery_low_pct: float, max_speed_mps: float,
    contact_window_s: float,
    slow: Bool, order_marks: npt.NDArray[np.int8], deferred: I64, missing: I64,
) -> tuple[int, int]:  # fmt: skip
    """Decide the signals at `positions` (ascending) of a batch, and move the tracks of the
    quiet ones. Sets `slow` for every signal the scalar path must take.

    A signal of an order that reaches a small polygon without its edges is set aside, with
    everything after it of that order, in `deferred`, and (zone row, order row) in `missing`:
    the caller adds the edges and runs this again on `deferred`. Returns both counts."""
    m = QUIET_MARGIN
    n_deferred = n_missing = 0
    for j in positions:
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
        quiet = not (
            forced_slow[j]
            or order_b[i, _HOT]
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
                _fast_distance_m(lat_j, lon_j, slot_f[s, _GOOD_LAT], slot_f[s, _GOOD_LON])
                - slot_f[s, _GOOD_ACCURACY] - accuracy_j
            )  # fmt: skip
            quiet = not jump > max_speed_mps * dt - m
        if quiet and subject[j] and in_force:
            reached = _zones_reached(
                zone_f, zone_i, zone_b, edges, masks,
                order_i[i, _ZONE_START], order_i[i, _ZONE_COUNT],
                tj, lat_j, lon_j, accuracy_j, hour0, offsets,
            )  # fmt: skip
            if reached >= 0:
                order_marks[i] = DEFERRED
                deferred[n_deferred] = j
                n_deferred += 1
                missing[n_missing, 0], missing[n_missing, 1] = reached, i
                n_missing += 1
                continue
            quiet = reached == _CLEAR
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
    return n_deferred, n_missing


def compile_now() -> None:
    """Compile `decide` for the argument types a `Partition` passes, and the edge distance for
    the scalar path's calls (or load them from numba's cache) before a batch needs them: ~2 s
    the first time, ~0.4 s from the cache."""
    f64 = np.zeros((1, 1), dtype=np.float64)
    i64 = np.zeros((1, 1), dtype=np.int64)
    flag = np.zeros((1, 1), dtype=np.bool_)
    no_f64, no_i64, no_flag = np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.bool_)
    decide(
        no_i64, no_i64, no_i64, no_flag, no_flag, no_f64, no_f64, no_f64, no_f64, no_f64, 0.0,
        f64, i64, flag, f64, flag, f64, i64, flag, f64, flag, 0, no_f64, 0.0, 0.0, 0.0, 0.0,
        no_flag, np.zeros(0, np.int8), no_i64, np.zeros((0, 2), np.int64),
    )  # fmt: skip
    signed_distance_to_edges(f64, 0, 0, 0.0, 0.0)  # as small polygons call it from Python


def compiled_versions() -> int:
    """How many argument-type versions of `decide` this process has compiled: one, unless a
    caller passes other types than `compile_now` (each costs a compile in a batch)."""
    return len(cast(Any, decide).signatures)
