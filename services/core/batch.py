"""The engine over a batch of signals for many orders at once, with the decisions of a fold of
`evaluate` over the same signals in the same order.

Most fixes are quiet: in order, plausible, clear of every zone by more than their accuracy and
warning buffer, no episode running for their order, no partner device near in time. Such a fix
decides nothing; it only moves its device's track forward. A `Partition` keeps the device tracks
of all its orders column-wise in numpy arrays, decides which fixes of a batch are quiet in bulk,
moves their tracks in bulk, and hands every other signal — and everything after it of the same
order in the batch — to `evaluate` itself, one at a time, in batch order.

Bulk decisions keep `QUIET_MARGIN` (metres or seconds) away from every threshold, so a rounding
difference between numpy and the scalar path can only send a fix down the scalar path, never
change a decision. tests/unit/test_core_batch.py checks the equality, property-based.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter, itemgetter
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from geo.projection import fast_distance_m_array, wrap_longitude_delta_array
from geo.shapes import CircleShape, PolygonShape, signed_distances_to_edges
from schemas.wire import Alert
from services.core.config import DEFAULT_RULES, RuleConfig
from services.core.engine import apply_order, evaluate, new_state, tick
from services.core.hashrows import HashRows
from services.core.model import (
    CompiledOrder,
    DeviceTrack,
    Fix,
    OrderState,
    Signal,
    SignalRejected,
)
from services.core.schedule import MINUTES_PER_WEEK, local_minute_of_week_array

QUIET_MARGIN = 1e-6
# Below this many signals the bulk decision's fixed cost (~200 us of numpy calls on small
# arrays) exceeds the scalar path's cost per signal: live traffic spread over a dozen
# partitions comes in batches of a few signals each.
SCALAR_BELOW = 16

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]
_FLOAT64 = np.dtype(np.float64)  # the dtype; F64 is the array type

NO_SLOT = -1
MANY_SLOTS = -2  # more than one protected device watched: always the scalar path
NO_DEVICE_HASH = -1  # an order without a subject device; Python's hash() never gives -1

# Device track fields held per slot: the optional ones with NaN for None, the others 0.0 as in
# a fresh DeviceTrack.
# The order of these is spelled out again in `_tracks` and `_track_floats`, which read and write
# a whole row at a time (the property tests fail on a mismatch).
_TRACK_OPTIONAL = ("last_t", "good_t", "last_rx", "last_fix_rx", "battery_pct")
_TRACK_PLAIN = ("lat", "lon", "accuracy_m", "good_lat", "good_lon", "good_accuracy_m")
_TRACK_FLOATS = _TRACK_OPTIONAL + _TRACK_PLAIN
TRACK_COLUMNS = (*_TRACK_FLOATS, "outlier")
_ORDER_FLOATS = ("valid_from", "valid_until", "watch_since")
_ORDER_INTS = ("subject_slot", "subject_hash", "partner_slot", "zone_start", "zone_count")
_ORDER_BOOLS = ("revoked", "ended", "hot")
_ZONE_FLOATS = ("lat0", "lon0", "kx", "ky", "radius_m", "minx", "miny", "maxx", "maxy", "buffer")
# Each with the fill of new rows. A small polygon's edges (see `_polygon_distance`) go into the
# edge table when they are first needed: until then `edge_count` is 0.
_ZONE_INTS = {"schedule_row": -1, "edge_start": 0, "edge_count": 0}
_ZONE_BOOLS = ("presence", "small_polygon")
_EDGE_FLOATS = ("x1", "y1", "x2", "y2")

_first, _second = itemgetter(0), itemgetter(1)
_device_id, _role, _t = attrgetter("device_id"), attrgetter("role"), attrgetter("t")
_lat, _lon, _accuracy_m = attrgetter("lat"), attrgetter("lon"), attrgetter("accuracy_m")
_battery_pct = attrgetter("battery_pct")


_Taken = dict[str, npt.NDArray[Any]]  # fields of some rows of a _Columns, by name


class _Columns:
    """Named numpy columns of one length, grown by doubling; new rows take the given fill.

    The columns of one dtype are the columns of one row-major matrix, so `take` gathers a row's
    fields from one or two cache lines: a batch at 100k orders reads its rows at random, and
    gathering column by column paid a cache miss a field."""

    def __init__(self, spec: dict[str, tuple[type, Any]]) -> None:
        self._spec = spec
        self.size = 0
        self._groups: dict[Any, list[str]] = {}
        for name, (dtype, _) in spec.items():
            self._groups.setdefault(np.dtype(dtype), []).append(name)
        self._matrices: dict[Any, npt.NDArray[Any]] = {}
        self.col: dict[str, npt.NDArray[Any]] = {}
        # One row to start with: the tests' small partitions then grow their columns too, so a
        # stale array kept across a growth shows there.
        self._allocate(1)

    def add(self, count: int = 1) -> int:
        first = self.size
        self.size += count
        capacity = len(next(iter(self._matrices.values())))
        if self.size > capacity:
            old = dict(self._matrices)
            self._allocate(max(self.size, capacity * 2))
            for dtype, matrix in old.items():
                self._matrices[dtype][:capacity] = matrix
        return first

    def rows_of(self, dtype: npt.DTypeLike, rows: I64) -> npt.NDArray[Any]:
        """`rows` of the matrix of one dtype: its columns in the order the spec names them."""
        return np.take(self._matrices[np.dtype(dtype)], rows, axis=0)

    def matrix(self, dtype: np.dtype[Any]) -> npt.NDArray[Any]:
        """The matrix of one dtype, a row per row of these columns: one row is read or written
        in one call, not one call a field. A growth replaces it; do not keep it across `add`."""
        return self._matrices[dtype]

    def take(self, rows: I64) -> _Taken:
        """The named fields of `rows`, one gather a dtype."""
        taken: _Taken = {}
        for dtype, names in self._groups.items():
            matrix = self.rows_of(dtype, rows)
            taken.update((name, matrix[:, k]) for k, name in enumerate(names))
        return taken

    def _allocate(self, capacity: int) -> None:
        for dtype, names in self._groups.items():
            fills = [self._spec[name][1] for name in names]
            self._matrices[dtype] = matrix = np.tile(np.array(fills, dtype=dtype), (capacity, 1))
            self.col.update((name, matrix[:, k]) for k, name in enumerate(names))


@dataclass
class SignalBatch:
    """Signals of many orders in arrival order, with their numbers column-wise. Build it with
    `Partition.batch`."""

    signals: list[Signal]
    order: I64
    slot: I64
    is_fix: Bool
    subject: Bool
    forced_slow: Bool  # not a fix, or a device in a role the columns do not model
    t: F64
    lat: F64
    lon: F64
    accuracy_m: F64
    battery_pct: F64
    # (position in the input, reason) for signals of orders this partition does not hold
    unknown: list[tuple[int, str]] = field(default_factory=list)
    positions: I64 | None = None  # input position of each kept signal, when some were dropped
    # False: too few signals for the bulk decision (`Partition.scalar_below`), so the columns
    # from `slot` on were not made (they are empty) and `evaluate` takes them one by one
    bulk: bool = True

    def __len__(self) -> int:
        return len(self.signals)


def _empty(dtype: type) -> npt.NDArray[Any]:
    made: npt.NDArray[Any] = np.empty(0, dtype=dtype)
    made.flags.writeable = False
    return made


_NO_I64, _NO_F64, _NO_BOOL = _empty(np.int64), _empty(np.float64), _empty(np.bool_)


class TrackRows(msgspec.Struct, array_like=True, frozen=True):
    """The tracks of a quiet order as its columns hold them: one row of `TRACK_COLUMNS` per
    device, float64, in `devices` order. A few bytes per device, made without building an
    object per track: most checkpoints only move tracks."""

    devices: tuple[str, ...]
    values: bytes


class ChangedRows(msgspec.Struct, array_like=True, frozen=True):
    """What changed in some orders, column by column (`Partition.changed`), one entry each."""

    states: list[OrderState | None]  # None: its objects are as last checkpointed
    devices: list[tuple[str, ...] | None]  # of its track rows; None: hot, its tracks in `states`
    values: bytes  # the track rows of the orders with devices, one after the other

    def track_rows(self) -> list[TrackRows | None]:
        """Each order's tracks cut from `values` (None for a hot order)."""
        return cut_track_rows(self.devices, self.values)


def cut_track_rows(devices: list[tuple[str, ...] | None], values: bytes) -> list[TrackRows | None]:
    """Per order, its track rows cut from one buffer of them all, in order (None where its
    devices are None: a hot order, whose tracks are in its state)."""
    cut: list[TrackRows | None] = []
    start, row_bytes = 0, len(TRACK_COLUMNS) * 8
    for own in devices:
        if own is None:
            cut.append(None)
            continue
        end = start + len(own) * row_bytes
        cut.append(TrackRows(own, values[start:end]))
        start = end
    return cut


class OrderCheckpoint(msgspec.Struct, frozen=True):  # a Struct: made for every order touched
    # None: the state's objects are as last checkpointed; only the tracks moved (quiet fixes).
    state: OrderState | None
    # None: the order is hot, its tracks are objects in `state`.
    tracks: TrackRows | None


@dataclass
class BatchOutcome:
    alerts: list[Alert]  # in input order, as a fold of `evaluate` would give them
    rejected: list[tuple[int, str]]  # (input position, reason)
    quiet: int  # fixes decided in bulk
    touched: set[int]  # order indices whose state changed


def _track_floats(track: DeviceTrack) -> tuple[float, ...]:
    """A track's _TRACK_FLOATS in order, NaN for None: one row of the slots' float matrix."""
    nan = math.nan
    return (
        nan if track.last_t is None else track.last_t,
        nan if track.good_t is None else track.good_t,
        nan if track.last_rx is None else track.last_rx,
        nan if track.last_fix_rx is None else track.last_fix_rx,
        nan if track.battery_pct is None else track.battery_pct,
        track.lat, track.lon, track.accuracy_m,
        track.good_lat, track.good_lon, track.good_accuracy_m,
    )  # fmt: skip


class Partition:
    """The orders of one partition, their states, and their device tracks column-wise."""

    def __init__(
        self, rules: RuleConfig = DEFAULT_RULES, *, scalar_below: int = SCALAR_BELOW
    ) -> None:
        self.rules = rules
        self.scalar_below = scalar_below  # smaller batches take the scalar path whole
        self.orders: list[CompiledOrder] = []
        self.states: list[OrderState] = []  # device tracks live in the columns, not in here
        self.index: dict[str, int] = {}
        self._rows_by_hash = HashRows()  # the same rows, looked up a batch at a time
        self._slot_of: dict[tuple[int, str], int] = {}
        self._order_slots: list[list[int]] = []
        # The device of each of `_order_slots[i]`, in its order, as one tuple: a checkpoint
        # takes it whole instead of touching each device's string (a cache miss apiece at 100k
        # orders).
        self._order_devices: list[tuple[str, ...]] = []
        self._slots = _Columns(
            {name: (np.float64, math.nan) for name in _TRACK_OPTIONAL}
            | {name: (np.float64, 0.0) for name in _TRACK_PLAIN}
            | {"outlier": (np.bool_, False), "watched": (np.bool_, False)}
        )
        self._orders = _Columns(
            {name: (np.float64, math.nan) for name in _ORDER_FLOATS}
            | {name: (np.int64, NO_SLOT) for name in _ORDER_INTS}
            | {name: (np.bool_, False) for name in _ORDER_BOOLS}
        )
        self._zones = _Columns(
            {name: (np.float64, math.nan) for name in _ZONE_FLOATS}
            | {name: (np.int64, fill) for name, fill in _ZONE_INTS.items()}
            | {name: (np.bool_, False) for name in _ZONE_BOOLS}
        )
        # The edges of the small polygons a fix came near the box of: most never see one.
        self._edges = _Columns({name: (np.float64, math.nan) for name in _EDGE_FLOATS})
        # Orders whose state objects changed since their last checkpoint (not only their tracks).
        self._restated: set[int] = set()
        self._schedule_rows: dict[bytes, int] = {}
        self._masks = np.zeros((0, MINUTES_PER_WEEK), dtype=np.bool_)

    # ------------------------------------------------------------ orders

    def upsert(
        self, order: CompiledOrder, now: float, state: OrderState | None = None
    ) -> list[Alert]:
        """Add an order (with its checkpointed state, if any) or move it to a new version."""
        i = self.index.get(order.order_id)
        if i is None:
            i = self._orders.add()
            self.index[order.order_id] = i
            self._rows_by_hash.add(hash(order.order_id), i)
            self.orders.append(order)
            self.states.append(state if state is not None else new_state(order, now))
            self._order_slots.append([])
            self._order_devices.append(())
            self._orders.col["hot"][i] = True  # its tracks, if any, are objects in `state`
            self._compile_order_rows(i)
            self._settle(i)
            if state is None:
                self._restated.add(i)
            return []
        if state is not None:
            raise ValueError(f"order {order.order_id} is already held; restore only new orders")
        self._hold_as_objects(i)
        self.states[i], alerts = apply_order(self.states[i], order, now, self.rules)
        self.orders[i] = order
        self._compile_order_rows(i)
        self._settle(i)
        self._restated.add(i)
        return alerts

    def export_state(self, i: int) -> OrderState:
        """A copy of the full state of one order, tracks included, as `evaluate` one signal at a
        time would hold it (checkpoints use `checkpoint`, which stores only what changed)."""
        state = self.states[i]
        return OrderState(
            order_id=state.order_id, version=state.version, watch_since=state.watch_since,
            ended=state.ended, zone_fingerprints=dict(state.zone_fingerprints),
            ban_fingerprints=dict(state.ban_fingerprints),
            devices=(
                {d: msgspec.structs.replace(track) for d, track in state.devices.items()}
                if self._orders.col["hot"][i] else self._tracks(i)
            ),
            episodes=dict(state.episodes), late_windows=dict(state.late_windows),
            last_started=dict(state.last_started),
        )  # fmt: skip

    def changed(self, indices: Sequence[int], *, full: bool = False) -> ChangedRows:
        """What a checkpoint of these orders must store beyond the previous one, column-wise:
        the state only where its objects changed (always, if `full`), the tracks of quiet
        orders as rows of their columns, in one buffer for all. No object per order: this runs
        for most orders a batch touches. Restore with `restore`; an order is restored from its
        newest state and newest tracks."""
        at = np.asarray(indices, dtype=np.int64)
        hot = self._orders.col["hot"][at]
        order_slots, order_devices = self._order_slots, self._order_devices
        rows = np.fromiter(
            itertools.chain.from_iterable(order_slots[i] for i in at[~hot].tolist()),
            dtype=np.int64,
        )
        # The slots' float columns are _TRACK_FLOATS in order (their spec in __init__), the
        # first of TRACK_COLUMNS: one gather for them all, not a copy a column.
        matrix = np.empty((len(rows), len(TRACK_COLUMNS)), dtype=np.float64)
        matrix[:, : len(_TRACK_FLOATS)] = self._slots.rows_of(np.float64, rows)
        matrix[:, -1] = self._slots.col["outlier"][rows]
        states, restated = self.states, self._restated
        made = ChangedRows(
            states=[states[i] if full or i in restated else None for i in indices],
            devices=[
                None if is_hot else order_devices[i]
                for i, is_hot in zip(indices, hot.tolist(), strict=True)
            ],
            values=matrix.tobytes(),
        )
        restated.difference_update(indices)
        return made

    def checkpoint(self, indices: Sequence[int], *, full: bool = False) -> list[OrderCheckpoint]:
        """`changed`, cut per order."""
        made = self.changed(indices, full=full)
        return [
            OrderCheckpoint(state, tracks)
            for state, tracks in zip(made.states, made.track_rows(), strict=True)
        ]

    def restore(
        self, order: CompiledOrder, now: float, state: OrderState, tracks: TrackRows | None
    ) -> None:
        """Take an order back in from its checkpoint (`checkpoint`'s state and tracks). Tracks
        come only with the state of a quiet order: an order cools in the scalar path, which
        restates it, so its newest state then has no episodes and its tracks go to the columns."""
        if tracks is not None:
            state = msgspec.structs.replace(state, devices={})  # the rows are newer
        self.upsert(order, now, state=state)
        if tracks is None:
            return
        i = self.index[order.order_id]
        values = np.frombuffer(tracks.values, dtype=np.float64).reshape(-1, len(TRACK_COLUMNS))
        for device_id, row in zip(tracks.devices, values, strict=True):
            slot = self._slot(i, device_id)  # first: a new slot may replace the matrices
            self._slots.matrix(_FLOAT64)[slot] = row[: len(_TRACK_FLOATS)]
            self._slots.col["outlier"][slot] = row[-1]

    def _slot(self, i: int, device_id: str) -> int:
        slot = self._slot_of.get((i, device_id))
        if slot is None:
            slot = self._slots.add()
            self._slot_of[(i, device_id)] = slot
            self._order_slots[i].append(slot)
            self._order_devices[i] += (device_id,)
        return slot

    def _compile_order_rows(self, i: int) -> None:
        order, state, cols = self.orders[i], self.states[i], self._orders.col
        cols["valid_from"][i] = order.valid_from
        cols["valid_until"][i] = math.inf if order.valid_until is None else order.valid_until
        cols["watch_since"][i] = state.watch_since
        cols["revoked"][i] = order.revoked
        subject = order.subject_device_id
        cols["subject_slot"][i] = NO_SLOT if subject is None else self._slot(i, subject)
        cols["subject_hash"][i] = NO_DEVICE_HASH if subject is None else hash(subject)
        watched = sorted(order.bans_by_protected_device)
        for slot, device_id in zip(self._order_slots[i], self._order_devices[i], strict=True):
            self._slots.col["watched"][slot] = device_id in watched
        cols["partner_slot"][i] = (
            NO_SLOT if not watched
            else self._slot(i, watched[0]) if len(watched) == 1
            else MANY_SLOTS
        )  # fmt: skip
        for device in watched:
            # The slot first: a new one may grow the columns, which replaces their arrays.
            slot = self._slot(i, device)
            self._slots.col["watched"][slot] = True
        # Zones get fresh rows; the old rows of an amended order are simply no longer pointed at.
        first = self._zones.add(len(order.zones))
        cols["zone_start"][i], cols["zone_count"][i] = first, len(order.zones)
        z = self._zones.col
        for row, zone in enumerate(order.zones, start=first):
            shape = zone.shape
            z["buffer"][row] = zone.warning_buffer_m
            z["presence"][row] = zone.kind == "presence_obligation"
            z["schedule_row"][row] = (
                -1 if zone.schedule is None else self._schedule_row(zone.schedule.mask)
            )
            if isinstance(shape, CircleShape):
                z["lat0"][row], z["lon0"][row] = shape.lat0, shape.lon0
                z["kx"][row], z["ky"][row] = shape.kx, shape.ky
                z["radius_m"][row] = shape.radius_m
            elif isinstance(shape, PolygonShape):
                plane = shape.plane
                z["lat0"][row], z["lon0"][row], z["kx"][row], z["ky"][row] = (
                    plane.lat0,
                    plane.lon0,
                    plane.kx,
                    plane.ky,
                )
                z["radius_m"][row] = math.nan
                z["minx"][row], z["miny"][row], z["maxx"][row], z["maxy"][row] = shape.xy_bounds
                z["small_polygon"][row] = shape.is_small
            else:  # an unknown shape: never quiet, always the scalar path
                z["radius_m"][row] = math.nan
                z["minx"][row] = z["miny"][row] = -math.inf
                z["maxx"][row] = z["maxy"][row] = math.inf

    def _schedule_row(self, mask: bytes) -> int:
        row = self._schedule_rows.get(mask)
        if row is None:
            row = self._schedule_rows[mask] = len(self._masks)
            week = np.frombuffer(mask, dtype=np.uint8).astype(np.bool_)
            self._masks = np.vstack([self._masks, week[np.newaxis, :]])
        return row

    # ------------------------------------------------------------ tracks: columns <-> objects

    def _tracks(self, i: int) -> dict[str, DeviceTrack]:
        floats, outlier = self._slots.matrix(_FLOAT64), self._slots.col["outlier"]
        tracks = {}
        for slot, device_id in zip(self._order_slots[i], self._order_devices[i], strict=True):
            # _TRACK_FLOATS in order (the slots' spec in __init__); NaN is None, and NaN != NaN.
            (
                last_t,
                good_t,
                last_rx,
                last_fix_rx,
                battery,
                lat,
                lon,
                accuracy_m,
                good_lat,
                good_lon,
                good_accuracy_m,
            ) = floats[slot].tolist()
            if last_rx != last_rx:
                continue  # never heard from: the scalar engine holds no track for it either
            tracks[device_id] = DeviceTrack(
                last_t=None if last_t != last_t else last_t, lat=lat, lon=lon,
                accuracy_m=accuracy_m, outlier=bool(outlier[slot]),
                good_t=None if good_t != good_t else good_t, good_lat=good_lat,
                good_lon=good_lon, good_accuracy_m=good_accuracy_m, last_rx=last_rx,
                last_fix_rx=None if last_fix_rx != last_fix_rx else last_fix_rx,
                battery_pct=None if battery != battery else int(battery),
            )  # fmt: skip
        return tracks

    def _hold_as_objects(self, i: int) -> None:
        """Before the scalar path: the order's tracks as DeviceTrack objects in its state."""
        hot = self._orders.col["hot"]
        if not hot[i]:
            self.states[i].devices = self._tracks(i)
            hot[i] = True

    def _settle(self, i: int) -> None:
        """After the scalar path. An order with a running episode keeps its tracks as objects
        (all its signals take the scalar path until the episode ends, so moving them to the
        columns and back every batch would be wasted); a quiet one goes back to the columns."""
        state, cols = self.states[i], self._orders.col
        cols["ended"][i] = state.ended
        cols["hot"][i] = bool(state.episodes)
        if state.episodes:
            return
        for device_id, track in state.devices.items():
            slot = self._slot(i, device_id)  # first: a new slot may replace the matrices
            self._slots.matrix(_FLOAT64)[slot] = _track_floats(track)
            self._slots.col["outlier"][slot] = track.outlier
        state.devices = {}

    # ------------------------------------------------------------ batches

    def _find_rows(self, order_ids: Iterable[str], count: int) -> I64:
        """The row of each of `count` order ids in `orders`; -1 for an order not held."""
        if self._rows_by_hash.distinct:
            # By the 64-bit hash of the id (Python's, keyed per process): an id this partition
            # does not hold matches a held one's hash by a chance of 2^-64 apiece.
            hashes = np.fromiter(map(hash, order_ids), np.int64, count=count)
            return self._rows_by_hash.find(hashes)
        found = map(self.index.get, order_ids, itertools.repeat(-1))
        return np.fromiter(found, np.int64, count=count)

    def batch(
        self, items: Sequence[tuple[str, Signal]], rows: Sequence[int] | None = None
    ) -> SignalBatch:
        """Column-wise view of (order_id, signal) pairs, in arrival order; `rows`: the orders'
        rows, when the caller has looked them up already. Each column is read with one `map`
        over the signals: this runs for every signal, and a comprehension a column cost half as
        much again."""
        n = len(items)
        if rows is None:
            o = self._find_rows(map(_first, items), n)
        else:
            o = np.fromiter(rows, np.int64, count=n)
        unknown: list[tuple[int, str]] = []
        positions = None
        if (o < 0).any():
            unknown = [
                (position, f"order {items[position][0]} is not held by this evaluator")
                for position in np.flatnonzero(o < 0).tolist()
            ]
            positions = np.flatnonzero(o >= 0)
            items = [items[p] for p in positions.tolist()]
            o = o[positions]
            n = len(items)
        kept: list[Signal] = list(map(_second, items))
        if n < self.scalar_below:
            # One by one in `evaluate`: only the signals and their orders are read. Making the
            # columns cost ~15 us a call, for a few signals a partition in live traffic.
            return SignalBatch(
                signals=kept, order=o, slot=_NO_I64, is_fix=_NO_BOOL, subject=_NO_BOOL,
                forced_slow=_NO_BOOL, t=_NO_F64, lat=_NO_F64, lon=_NO_F64, accuracy_m=_NO_F64,
                battery_pct=_NO_F64, unknown=unknown, positions=positions, bulk=False,
            )  # fmt: skip
        cols = self._orders.col
        # Most signals are fixes of the order's subject device, whose slot is in the order's
        # columns. The device ids are compared by hash: comparing the strings reads the order's
        # copy of the id, a cache miss a signal at 100k orders. Two device ids of one order with
        # the same 64-bit hash is a chance of 2^-64.
        device_hash = np.fromiter(map(hash, map(_device_id, kept)), np.int64, count=n)
        subject_slot = cols["subject_slot"][o]
        s = np.where(cols["subject_hash"][o] == device_hash, subject_slot, NO_SLOT)
        for k in np.flatnonzero(s == NO_SLOT).tolist():
            s[k] = self._slot(int(o[k]), kept[k].device_id)
        is_fix = np.fromiter(map(Fix.__instancecheck__, kept), np.bool_, count=n)
        subject = np.fromiter(map("subject".__eq__, map(_role, kept)), np.bool_, count=n)
        # A subject fix from a device other than the order's subject device (or the reverse)
        # is legal but odd; the scalar path handles it.
        odd_role = subject != (s == subject_slot)
        if is_fix.all():
            fixes: list[Fix] = kept  # type: ignore[assignment]
        else:
            far = Fix(device_id="", role="subject", person_id="", t=0.0, lat=math.nan,
                      lon=math.nan, accuracy_m=math.nan)  # fmt: skip
            fixes = [sig if type(sig) is Fix else far for sig in kept]
        return SignalBatch(
            signals=kept, order=o, slot=s, is_fix=is_fix, subject=subject,
            forced_slow=~is_fix | odd_role,
            t=np.fromiter(map(_t, kept), np.float64, count=n),
            lat=np.fromiter(map(_lat, fixes), np.float64, count=n),
            lon=np.fromiter(map(_lon, fixes), np.float64, count=n),
            accuracy_m=np.fromiter(map(_accuracy_m, fixes), np.float64, count=n),
            # None becomes NaN in a float array (np.fromiter refuses it)
            battery_pct=np.array(list(map(_battery_pct, kept)), dtype=np.float64),
            unknown=unknown, positions=positions,
        )  # fmt: skip

    def evaluate(self, batch: SignalBatch, now: float) -> BatchOutcome:
        """Every signal of the batch, as `evaluate` one by one in batch order would."""
        if not batch.bulk:  # `batch` decided it, by `scalar_below`
            return self._scalar_path(batch, np.arange(len(batch)), 0, set(), now)
        # Each signal's order and track fields, gathered row by row once for the whole batch.
        of_order, of_slot = self._orders.take(batch.order), self._slots.take(batch.slot)
        in_force = self._in_force(batch, of_order)
        slow = self._slow(batch, of_order, of_slot, in_force, now)
        quiet = ~slow
        self._move_quiet_tracks(batch, quiet, in_force, now)
        return self._scalar_path(
            batch, np.flatnonzero(slow), int(quiet.sum()), set(batch.order[quiet].tolist()), now
        )

    def _scalar_path(
        self, batch: SignalBatch, slow_at: I64, quiet: int, touched: set[int], now: float
    ) -> BatchOutcome:
        """`evaluate` one by one for the signals at `slow_at`; the rest were decided in bulk."""
        alerts: list[Alert] = []
        rejected = list(batch.unknown)
        scalar: set[int] = set()
        signals, orders, states, rules = batch.signals, self.orders, self.states, self.rules
        order_of = batch.order
        for position in slow_at.tolist():
            i = int(order_of[position])
            if i not in scalar:
                self._hold_as_objects(i)
                scalar.add(i)
            try:
                states[i], out = evaluate(states[i], signals[position], orders[i], now, rules)
            except SignalRejected as exc:
                where = position if batch.positions is None else int(batch.positions[position])
                rejected.append((where, str(exc)))
                continue
            alerts += out
        for i in scalar:
            self._settle(i)
        self._restated |= scalar
        touched |= scalar
        rejected.sort()
        return BatchOutcome(alerts, rejected, quiet, touched)

    def _move_quiet_tracks(
        self, batch: SignalBatch, quiet: Bool, in_force: Bool, now: float
    ) -> None:
        """What `evaluate` does to the track of a quiet fix, for the newest quiet fix per slot."""
        c = self._slots.col
        newest = _newest_per_key(batch.slot, quiet)
        slots = batch.slot[newest]
        # A quiet fix is not an outlier, so it is also the device's newest good fix.
        c["last_t"][slots] = c["good_t"][slots] = batch.t[newest]
        c["lat"][slots] = c["good_lat"][slots] = batch.lat[newest]
        c["lon"][slots] = c["good_lon"][slots] = batch.lon[newest]
        c["accuracy_m"][slots] = c["good_accuracy_m"][slots] = batch.accuracy_m[newest]
        c["outlier"][slots] = False
        c["last_rx"][slots] = now
        c["last_fix_rx"][slots] = now
        charged = _newest_per_key(
            batch.slot, quiet & batch.subject & in_force & ~np.isnan(batch.battery_pct)
        )
        c["battery_pct"][batch.slot[charged]] = batch.battery_pct[charged]

    def tick(self, now: float) -> tuple[list[Alert], set[int]]:
        """Wall-clock timers of every order; only orders a timer may concern reach `tick`."""
        n = self._orders.size
        c, sc = self._orders.col, self._slots.col
        subject = c["subject_slot"][:n]
        has_subject = subject >= 0
        heard = np.where(has_subject, sc["last_fix_rx"][np.maximum(subject, 0)], math.nan)
        base = np.where(np.isnan(heard), c["watch_since"][:n], heard)
        dark = (
            has_subject
            & (now >= c["valid_from"][:n])
            & (now - base >= self.rules.signal_lost_after_s - QUIET_MARGIN)
        )
        # Hot orders hold their tracks as objects, so the columns cannot tell: always ask tick.
        due = ~c["ended"][:n] & (
            c["revoked"][:n] | (c["valid_until"][:n] <= now) | dark | c["hot"][:n]
        )
        alerts: list[Alert] = []
        touched: set[int] = set()
        hot = c["hot"]
        for i in np.flatnonzero(due).tolist():
            was_hot = bool(hot[i])
            self._hold_as_objects(i)
            ended = self.states[i].ended
            self.states[i], out = tick(self.states[i], self.orders[i], now, self.rules)
            # `tick` changes a state only to decide something, or to end an order with no
            # episode open (which decides nothing). Otherwise there is nothing to checkpoint:
            # every hot order is asked every second, and most of them have nothing due.
            if out or self.states[i].ended != ended:
                self._settle(i)
                self._restated.add(i)
                alerts += out
                touched.add(i)
            elif not was_hot:
                self._settle(i)  # its unchanged tracks back to the columns
        return alerts, touched

    # ------------------------------------------------------------ the bulk decision

    def _in_force(self, batch: SignalBatch, of_order: _Taken) -> Bool:
        """`CompiledOrder.in_force` of each signal's order at the signal's time."""
        t = batch.t
        with np.errstate(invalid="ignore"):
            in_force: Bool = (
                ~of_order["revoked"] & (t >= of_order["valid_from"]) & (t < of_order["valid_until"])
            )
        return in_force

    def _slow(
        self, batch: SignalBatch, of_order: _Taken, of_slot: _Taken, in_force: Bool, now: float
    ) -> Bool:
        """Which signals need the scalar path: everything not provably quiet, and everything
        after such a signal of the same order."""
        n = len(batch)
        rules, m = self.rules, QUIET_MARGIN
        o, s, t = batch.order, batch.slot, batch.t
        lat, lon, acc = batch.lat, batch.lon, batch.accuracy_m
        if n == 0:
            return np.zeros(0, dtype=np.bool_)
        with np.errstate(invalid="ignore"):
            # The contract checks of `check_signal`: a signal that breaks one is rejected there.
            slow = batch.forced_slow | of_order["hot"]
            slow |= ~(np.isfinite(t) & (t - now <= rules.max_future_skew_s))
            slow |= ~(np.isfinite(lat) & (lat >= -90.0) & (lat <= 90.0))
            slow |= ~(np.isfinite(lon) & (lon >= -180.0) & (lon <= 180.0))
            slow |= ~(np.isfinite(acc) & (acc > 0.0))
            battery = batch.battery_pct
            slow |= batch.subject & in_force & (battery < rules.battery_low_pct)

            # The device's previous fix: an earlier quiet fix of the batch, or its track.
            previous = _previous_in_group(s)
            has_prev = previous >= 0
            prev = np.maximum(previous, 0)

            def before(name: str, values: F64) -> F64:
                return np.where(has_prev, values[prev], of_slot[name])

            last_t = before("last_t", t)
            slow |= last_t > t  # late: the scalar path keeps it as evidence
            good_t = before("good_t", t)
            jump = (
                fast_distance_m_array(lat, lon, before("good_lat", lat), before("good_lon", lon))
                - before("good_accuracy_m", acc) - acc
            )  # fmt: skip
            slow |= jump > rules.max_speed_mps * np.maximum(t - good_t, 1.0) - m

            watching = batch.subject & in_force & ~slow
            slow |= self._near_a_zone(batch, of_order, np.flatnonzero(watching))
            slow |= self._partner_in_time(batch, of_order, of_slot, in_force)
        return _spread_to_later(o, slow)

    def _near_a_zone(self, batch: SignalBatch, of_order: _Taken, items: I64) -> Bool:
        near = np.zeros(len(batch), dtype=np.bool_)
        if len(items) == 0:
            return near
        counts = of_order["zone_count"][items]
        pair_item = np.repeat(items, counts)
        starts = np.repeat(of_order["zone_start"][items], counts)
        offsets = np.arange(len(pair_item)) - np.repeat(np.cumsum(counts) - counts, counts)
        row = starts + offsets
        z = self._zones.take(row)
        lat, lon = batch.lat[pair_item], batch.lon[pair_item]
        dx = wrap_longitude_delta_array(lon - z["lon0"]) * z["kx"]
        dy = (lat - z["lat0"]) * z["ky"]
        radius = z["radius_m"]
        is_circle = ~np.isnan(radius)
        reach = batch.accuracy_m[pair_item] + z["buffer"] + QUIET_MARGIN
        circle_distance = np.sqrt(dx * dx + dy * dy) - radius
        # Outside a polygon's box by this much: a lower bound of the distance to the polygon.
        outside_box = np.maximum(
            np.maximum(z["minx"] - dx, dx - z["maxx"]),
            np.maximum(z["miny"] - dy, dy - z["maxy"]),
        )
        presence = z["presence"]
        clear = np.where(
            presence,
            is_circle & (circle_distance <= -reach),  # deep inside where one must be
            np.where(is_circle, circle_distance >= reach, outside_box >= reach),
        )
        # Within a small polygon's box is not yet near it: its exact distance may still clear.
        boxed = np.flatnonzero(~clear & z["small_polygon"])
        if len(boxed):
            distance = self._polygon_distance(
                row[boxed], batch.order[pair_item[boxed]], offsets[boxed], dx[boxed], dy[boxed]
            )
            clear[boxed] = np.where(
                presence[boxed], distance <= -reach[boxed], distance >= reach[boxed]
            )
        scheduled = z["schedule_row"] >= 0
        if scheduled.any():
            at = np.flatnonzero(scheduled)
            minute = local_minute_of_week_array(batch.t[pair_item[at]])
            clear[at] |= ~self._masks[z["schedule_row"][at], minute]
        near[pair_item[~clear]] = True
        return near

    def _polygon_distance(self, rows: I64, orders: I64, zones: I64, x: F64, y: F64) -> F64:
        """Signed distance from each (x, y) to the small polygon of its zone row (zone number
        `zones` of order `orders`), as `PolygonShape.signed_distance` gives it."""
        z, e = self._zones.col, self._edges.col
        missing = np.flatnonzero(z["edge_count"][rows] == 0)
        for k in missing.tolist():
            row = int(rows[k])
            if z["edge_count"][row] == 0:  # not already added for an earlier pair
                shape = self.orders[int(orders[k])].zones[int(zones[k])].shape
                assert isinstance(shape, PolygonShape)
                self._add_edges(row, shape)
        counts = z["edge_count"][rows]
        firsts = np.cumsum(counts) - counts
        pair = np.repeat(np.arange(len(rows)), counts)
        edge = np.repeat(z["edge_start"][rows], counts) + np.arange(len(pair)) - firsts[pair]
        return signed_distances_to_edges(
            e["x1"][edge], e["y1"][edge], e["x2"][edge], e["y2"][edge], firsts, x[pair], y[pair]
        )

    def _add_edges(self, row: int, shape: PolygonShape) -> None:
        x1, y1, x2, y2 = shape.edges()
        first = self._edges.add(len(x1))
        end, e = first + len(x1), self._edges.col
        e["x1"][first:end], e["y1"][first:end], e["x2"][first:end], e["y2"][first:end] = (
            x1,
            y1,
            x2,
            y2,
        )
        self._zones.col["edge_start"][row], self._zones.col["edge_count"][row] = first, len(x1)

    def _partner_in_time(
        self, batch: SignalBatch, of_order: _Taken, of_slot: _Taken, in_force: Bool
    ) -> Bool:
        """Fixes that pair with the other device of a contact ban within the contact window."""
        o, s, t = batch.order, batch.slot, batch.t
        partner_of_order, subject_of_order = of_order["partner_slot"], of_order["subject_slot"]
        as_subject = batch.subject & (partner_of_order != NO_SLOT)
        as_protected = ~batch.subject & of_slot["watched"]
        partner = np.where(as_subject, partner_of_order, subject_of_order)
        concerned = in_force & (as_subject | as_protected)
        if not concerned.any():
            return np.zeros(len(batch), dtype=np.bool_)
        # The partner's newest time: its latest earlier signal in the batch, else its track.
        latest_subject = _last_marked_in_group(o, s == subject_of_order)
        latest_protected = _last_marked_in_group(o, s == partner_of_order)
        latest = np.where(as_subject, latest_protected, latest_subject)
        partner_t = np.where(
            latest >= 0, t[np.maximum(latest, 0)], self._slots.col["last_t"][np.maximum(partner, 0)]
        )
        with np.errstate(invalid="ignore"):
            in_time = np.abs(t - partner_t) <= self.rules.contact_window_s + QUIET_MARGIN
        paired: Bool = concerned & ((partner < 0) | in_time)
        return paired


# ---------------------------------------------------------------- group helpers


def _previous_in_group(keys: I64) -> I64:
    """For each position, the previous position with the same key, or -1."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    same = np.zeros(len(keys), dtype=np.bool_)
    same[1:] = sorted_keys[1:] == sorted_keys[:-1]
    previous_sorted = np.where(same, np.roll(order, 1), -1)
    previous = np.empty(len(keys), dtype=np.int64)
    previous[order] = previous_sorted
    return previous


def _last_marked_in_group(groups: I64, marked: Bool) -> I64:
    """For each position, the last position at or before it in the same group that is marked,
    or -1."""
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    index = np.where(marked[order], np.arange(len(groups)), -1)
    last = np.maximum.accumulate(index) if len(index) else index
    valid = last >= 0
    valid[valid] = sorted_groups[last[valid]] == sorted_groups[valid]
    found = np.where(valid, order[np.maximum(last, 0)], -1)
    result = np.empty(len(groups), dtype=np.int64)
    result[order] = found
    return result


def _newest_per_key(keys: I64, marked: Bool) -> I64:
    """The last marked position of each key."""
    at = np.flatnonzero(marked)
    if len(at) == 0:
        return at
    order = np.argsort(keys[at], kind="stable")
    ordered_keys = keys[at][order]
    last = np.ones(len(at), dtype=np.bool_)
    last[:-1] = ordered_keys[:-1] != ordered_keys[1:]
    return at[order][last]


def _spread_to_later(groups: I64, slow: Bool) -> Bool:
    """Once a signal of an order needs the scalar path, so does everything after it of that
    order: the bulk decisions assumed the quiet state before them."""
    spread: Bool = _last_marked_in_group(groups, slow) >= 0
    return spread
