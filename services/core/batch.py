"""The engine over a batch of signals for many orders at once, with the decisions of a fold of
`evaluate` over the same signals in the same order.

Most fixes are quiet: in order, plausible, clear of every zone by more than their accuracy and
warning buffer, no partner device near in time, and for an order with open zone episodes (hot),
leaving each of them as it is but for its counters (a breach that goes on, not yet critical; a
warning that stays one). Such a fix decides nothing; it only moves its device's track forward,
and a hot order's episode counters. A `Partition` keeps the device tracks
of all its orders column-wise in numpy arrays, decides which fixes of a batch are quiet and moves
their tracks in one compiled pass (services/core/bulk.py), and hands every other signal — and
everything after it of the same order in the batch — to `evaluate` itself, one at a time, in
batch order.

Bulk decisions keep `QUIET_MARGIN` (metres or seconds) away from every threshold, so a rounding
difference between the compiled pass and the scalar path can only send a fix down the scalar
path, never change a decision. tests/unit/test_core_batch.py checks the equality,
property-based.
"""

from __future__ import annotations

import functools
import itertools
import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from geo.shapes import CircleShape, PolygonShape
from schemas.wire import Alert
from services.core.bulk import (
    EDGE_FLOATS,
    EPISODE_CODES,
    EPISODE_NONE,
    EPISODE_UNSTEADY,
    MANY_SLOTS,
    NO_SLOT,
    ORDER_BOOLS,
    ORDER_FLOATS,
    ORDER_INTS,
    QUIET_MARGIN,
    SLOT_BOOLS,
    TRACK_FLOATS,
    TRACK_OPTIONAL,
    TRACK_PLAIN,
    UNDECIDED,
    ZONE_BOOLS,
    ZONE_FLOATS,
    ZONE_INTS,
    decide,
    subject_slots,
)
from services.core.config import DEFAULT_RULES, RuleConfig
from services.core.engine import (
    apply_order,
    evaluate,
    new_state,
    tick,
)
from services.core.hashrows import HashRows
from services.core.model import (
    CompiledOrder,
    DeviceTrack,
    OrderState,
    Signal,
    SignalRejected,
)
from services.core.schedule import MINUTES_PER_WEEK, amsterdam_offset_s
from services.core.signal_columns import FIX, SignalColumns, id_hash, read_signals

# Below this many signals the bulk decision's fixed cost (~35 us a batch: its columns, then the
# compiled pass) exceeds what it saves on the scalar path (~20 us a signal). Live traffic spread
# over a dozen partitions comes in batches of a few signals each. Measured at 100k orders, us a
# signal, scalar / bulk: 2 a batch 25-28 / 30-31, 4 a batch 21 / 17-18, 8 a batch 19 / 11.
SCALAR_BELOW = 4

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]
# The dtypes of the columns' matrices (F64 and the others are array types)
_FLOAT64, _INT64, _BOOL = np.dtype(np.float64), np.dtype(np.int64), np.dtype(np.bool_)
# The schedules' table of UTC offsets covers at most this many hours from a batch's first fix:
# a batch spanning more (a very old fix among new ones) sends the rest to the scalar path.
_MAX_SCHEDULE_HOURS = 24 * 31
_FEW = 32  # signals: below this, a list beats numpy's fixed cost a call

NO_DEVICE_HASH = -1  # an order without a subject device; id_hash never gives -1
TRACK_COLUMNS = (*TRACK_FLOATS, "outlier")  # a track row of a checkpoint (`TrackRows`)

_first, _second = itemgetter(0), itemgetter(1)


class _Columns:
    """Named numpy columns of one length, grown by doubling; new rows take the given fill.

    The columns of one dtype are the columns of one row-major matrix, so a row's fields are in
    one or two cache lines: a batch at 100k orders reads its rows at random, and reading column
    by column paid a cache miss a field."""

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
    quiet_orders: I64  # the order index of each fix decided in bulk (its track moved)
    scalar_touched: set[int]  # order indices the scalar path took, whose state may have changed

    @property
    def quiet(self) -> int:
        """Fixes decided in bulk."""
        return len(self.quiet_orders)

    @property
    def touched(self) -> set[int]:
        """Order indices whose state or tracks changed. The evaluator has the quiet ones'
        already, from the signals' sources: a set of them made here cost ~0.1 us a signal."""
        return self.scalar_touched | set(self.quiet_orders.tolist())


def _track_floats(track: DeviceTrack) -> tuple[float, ...]:
    """A track's TRACK_FLOATS in order, NaN for None: one row of the slots' float matrix."""
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


@functools.lru_cache(maxsize=16)
def _offset_table(first: int, last: int) -> F64:
    """Amsterdam's UTC offset in seconds for each hour from `first` to `last`. Live batches
    all fall in the same hour or two, and looking the offsets up again cost ~5 us a batch of
    a partition. Never written to: every batch over these hours reads the same array."""
    offsets = [amsterdam_offset_s(hour * 3600.0) for hour in range(first, last + 1)]
    return np.array(offsets, dtype=np.float64)


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value


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
        self._order_slots: list[list[int]] = []
        # The device of each of `_order_slots[i]`, in its order, as one tuple: a checkpoint
        # takes it whole instead of touching each device's string (a cache miss apiece at 100k
        # orders).
        self._order_devices: list[tuple[str, ...]] = []
        self._slots = _Columns(
            {name: (np.float64, math.nan) for name in TRACK_OPTIONAL}
            | {name: (np.float64, 0.0) for name in TRACK_PLAIN}
            | {name: (np.bool_, False) for name in SLOT_BOOLS}
        )
        self._orders = _Columns(
            {name: (np.float64, math.nan) for name in ORDER_FLOATS}
            | {name: (np.int64, NO_SLOT) for name in ORDER_INTS}
            | {name: (np.bool_, False) for name in ORDER_BOOLS}
        )
        self._zones = _Columns(
            {name: (np.float64, math.nan) for name in ZONE_FLOATS}
            | {name: (np.int64, fill) for name, fill in ZONE_INTS.items()}
            | {name: (np.bool_, False) for name in ZONE_BOOLS}
        )
        # The edges of the polygons a fix came near the box of: most never see one. A shape
        # many orders name (a municipality) has one copy, found here by the shape.
        self._edges = _Columns({name: (np.float64, math.nan) for name in EDGE_FLOATS})
        self._edge_ranges: weakref.WeakKeyDictionary[PolygonShape, tuple[int, int]] = (
            weakref.WeakKeyDictionary()
        )
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
            self._rows_by_hash.add(id_hash(order.order_id), i)
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
        if self._orders.col["stale"][i]:
            self._catch_up(i)
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
        for i in at[self._orders.col["stale"][at]].tolist():
            self._catch_up(i)  # its state goes with the checkpoint
        hot = self._orders.col["hot"][at]
        order_slots, order_devices = self._order_slots, self._order_devices
        rows = np.fromiter(
            itertools.chain.from_iterable(order_slots[i] for i in at[~hot].tolist()),
            dtype=np.int64,
        )
        # The slots' float columns are TRACK_FLOATS in order (their spec in __init__), the
        # first of TRACK_COLUMNS: one gather for them all, not a copy a column.
        matrix = np.empty((len(rows), len(TRACK_COLUMNS)), dtype=np.float64)
        matrix[:, : len(TRACK_FLOATS)] = self._slots.rows_of(np.float64, rows)
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
            self._slots.matrix(_FLOAT64)[slot] = row[: len(TRACK_FLOATS)]
            self._slots.col["outlier"][slot] = row[-1]

    def _slot(self, i: int, device_id: str) -> int:
        # Found among the order's own few devices: a dict of every slot of the partition was a
        # cache miss a lookup at 100k orders, and ~16 MiB of keys for 100k slots.
        known = self._order_devices[i]
        if device_id in known:
            return self._order_slots[i][known.index(device_id)]
        slot = self._slots.add()
        self._order_slots[i].append(slot)
        self._order_devices[i] = (*known, device_id)
        return slot

    def _compile_order_rows(self, i: int) -> None:
        order, state, cols = self.orders[i], self.states[i], self._orders.col
        cols["valid_from"][i] = order.valid_from
        cols["valid_until"][i] = math.inf if order.valid_until is None else order.valid_until
        cols["watch_since"][i] = state.watch_since
        cols["revoked"][i] = order.revoked
        subject = order.subject_device_id
        cols["subject_slot"][i] = NO_SLOT if subject is None else self._slot(i, subject)
        cols["subject_hash"][i] = NO_DEVICE_HASH if subject is None else id_hash(subject)
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
                z["polygon"][row] = True
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
            # TRACK_FLOATS in order (the slots' spec in __init__); NaN is None, and NaN != NaN.
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
        """Before the scalar path: the order's tracks as DeviceTrack objects in its state, and
        its objects up to date with its columns."""
        hot = self._orders.col["hot"]
        if not hot[i]:
            self.states[i].devices = self._tracks(i)
            hot[i] = True
        elif self._orders.col["stale"][i]:
            self._catch_up(i)

    def _catch_up(self, i: int) -> None:
        """A hot order's objects, from the columns the bulk decision moved since `_settle`
        (`stale`): its tracks, and its zone episodes' counters. Once for all the steady fixes in
        between: moving the objects fix by fix cost ~7 us a fix at 100k orders."""
        state, cols, z = self.states[i], self._orders.col, self._zones.col
        state.devices = self._tracks(i)
        episodes = state.episodes
        for row, zone in enumerate(self.orders[i].zones, start=int(cols["zone_start"][i])):
            episode = episodes.get(zone.episode_key)
            if episode is None:
                continue
            last_t, possible_since, outside_since = (
                float(z["last_t"][row]), float(z["possible_since"][row]),
                float(z["outside_since"][row]),
            )  # fmt: skip
            episode.last_t = last_t
            episode.possible_since = None if possible_since != possible_since else possible_since
            episode.outside_since = None if outside_since != outside_since else outside_since
            episode.possible_count = int(z["possible_count"][row])
        cols["stale"][i] = False
        self._restated.add(i)

    def _settle(self, i: int) -> None:
        """After the scalar path. An order with a running episode (hot) keeps its tracks as
        objects, with a copy in the columns for the bulk decision, which moves the columns
        only (`_catch_up`); a quiet one's go back to the columns. The columns learn what the
        open episodes say."""
        state, cols = self.states[i], self._orders.col
        cols["ended"][i] = state.ended
        cols["hot"][i] = hot = bool(state.episodes)
        for device_id, track in state.devices.items():
            slot = self._slot(i, device_id)  # first: a new slot may replace the matrices
            self._slots.matrix(_FLOAT64)[slot] = _track_floats(track)
            self._slots.col["outlier"][slot] = track.outlier
        self._describe_episodes(i)
        if not hot:
            state.devices = {}

    def _describe_episodes(self, i: int) -> None:
        """Each zone's open episode as a code in its row (see services/core/bulk.py), and the
        number of the order's other open episodes."""
        cols, z = self._orders.col, self._zones.col
        first, count = int(cols["zone_start"][i]), int(cols["zone_count"][i])
        episodes = self.states[i].episodes
        if not episodes:
            z["episode"][first : first + count] = EPISODE_NONE
            cols["other_episodes"][i] = 0
            return
        others = len(episodes)
        for row, zone in enumerate(self.orders[i].zones, start=first):
            episode = episodes.get(zone.episode_key)
            if episode is None:
                z["episode"][row] = EPISODE_NONE
                continue
            others -= 1
            code = EPISODE_CODES.get((episode.severity, episode.certainty), EPISODE_UNSTEADY)
            since = math.nan
            if episode.seq < 0:
                code = EPISODE_UNSTEADY  # in its dwell, nothing sent yet
            elif episode.breach_since is not None:
                since = episode.breach_since
            z["episode"][row], z["breach_since"][row] = code, since
            # the counters a steady fix moves (services/core/bulk.py), NaN for None
            z["last_t"][row] = episode.last_t
            z["possible_since"][row] = _or_nan(episode.possible_since)
            z["outside_since"][row] = _or_nan(episode.outside_since)
            z["possible_count"][row] = episode.possible_count
        cols["other_episodes"][i] = others

    # ------------------------------------------------------------ batches

    def _find_rows(self, items: Sequence[tuple[str, Signal]], read: SignalColumns) -> I64:
        """The row of each pair's order in `orders`; -1 for an order not held."""
        if self._rows_by_hash.distinct:
            # By the 64-bit hash of the id: an id this partition does not hold matches a held
            # one's hash by a chance of 2^-64 apiece.
            return self._rows_by_hash.find(read.order_hash)
        found = map(self.index.get, map(_first, items), itertools.repeat(-1))
        return np.fromiter(found, np.int64, count=len(items))

    def batch(
        self, items: Sequence[tuple[str, Signal]], rows: Sequence[int] | None = None
    ) -> SignalBatch:
        """Column-wise view of (order_id, signal) pairs, in arrival order; `rows`: the orders'
        rows, when the caller has looked them up already. The columns are read from the pairs'
        msgpack encoding in one compiled pass (services/core/signal_columns.py)."""
        n = len(items)
        kept: list[Signal] = list(map(_second, items))
        read = None
        if rows is None or n >= self.scalar_below:
            read = read_signals(items, kept)
        if rows is not None:
            o = np.fromiter(rows, np.int64, count=n)
        else:
            assert read is not None
            o = self._find_rows(items, read)
        unknown: list[tuple[int, str]] = []
        positions = None
        if (o < 0).any():
            unknown = [
                (position, f"order {items[position][0]} is not held by this evaluator")
                for position in np.flatnonzero(o < 0).tolist()
            ]
            positions = np.flatnonzero(o >= 0)
            kept = [kept[p] for p in positions.tolist()]
            o = o[positions]
            n = len(kept)
            if read is not None:
                read = read.take(positions)
        if n < self.scalar_below or read is None:
            # One by one in `evaluate`: only the signals and their orders are read. Making the
            # columns cost ~15 us a call, for a few signals a partition in live traffic.
            return SignalBatch(
                signals=kept, order=o, slot=_NO_I64, is_fix=_NO_BOOL, subject=_NO_BOOL,
                forced_slow=_NO_BOOL, t=_NO_F64, lat=_NO_F64, lon=_NO_F64, accuracy_m=_NO_F64,
                battery_pct=_NO_F64, unknown=unknown, positions=positions, bulk=False,
            )  # fmt: skip
        is_fix = read.kind == FIX
        # Most signals are fixes of the order's subject device, whose slot is in the order's
        # columns. The device ids are compared by hash: comparing the strings reads the order's
        # copy of the id, a cache miss a signal at 100k orders. Two device ids of one order with
        # the same 64-bit hash is a chance of 2^-64.
        s, forced_slow = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.bool_)
        if subject_slots(o, read.device_hash, is_fix, read.subject, self._orders.matrix(_INT64),
                         s, forced_slow):  # fmt: skip
            for k in np.flatnonzero(s == NO_SLOT).tolist():
                s[k] = self._slot(int(o[k]), kept[k].device_id)
        return SignalBatch(
            signals=kept, order=o, slot=s, is_fix=is_fix, subject=read.subject,
            forced_slow=forced_slow, t=read.t, lat=read.lat, lon=read.lon,
            accuracy_m=read.accuracy_m, battery_pct=read.battery_pct, unknown=unknown,
            positions=positions,
        )  # fmt: skip

    def evaluate(self, batch: SignalBatch, now: float) -> BatchOutcome:
        """Every signal of the batch, as `evaluate` one by one in batch order would."""
        if not batch.bulk:  # `batch` decided it, by `scalar_below`
            return self._scalar_path(batch, np.arange(len(batch)), _NO_I64, now)
        slow, steady = self._decide_in_bulk(batch, now)
        # Hot orders whose columns a steady fix moved: their objects catch up when next read.
        self._orders.col["stale"][batch.order[steady]] = True
        return self._scalar_path(batch, np.flatnonzero(slow), batch.order[~slow], now)

    def _scalar_path(
        self, batch: SignalBatch, slow_at: I64, quiet_orders: I64, now: float
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
        rejected.sort()
        return BatchOutcome(alerts, rejected, quiet_orders, scalar)

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
        # A hot order's tracks are objects with a copy in the columns, which `_settle` and the
        # bulk decision keep (the bulk decision reads them too), so the columns tell for it as
        # well. Asking `tick` for every hot order cost ~0.4 ms a partition every second.
        due = ~c["ended"][:n] & (c["revoked"][:n] | (c["valid_until"][:n] <= now) | dark)
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
            # QUIET_MARGIN lets an order through that is not quite due yet.
            if out or self.states[i].ended != ended:
                self._settle(i)
                self._restated.add(i)
                alerts += out
                touched.add(i)
            elif not was_hot:
                self._settle(i)  # its unchanged tracks back to the columns
        return alerts, touched

    # ------------------------------------------------------------ the bulk decision

    def _decide_in_bulk(self, batch: SignalBatch, now: float) -> tuple[Bool, Bool]:
        """Which signals need the scalar path, and which are steady fixes of hot orders
        (services/core/bulk.py); the quiet ones' tracks are moved. A pass that comes near a
        polygon without its edges sets that order aside; the edges are added and the orders set
        aside go again, from where they were."""
        n, rules = len(batch), self.rules
        slow, steady = np.zeros(n, dtype=np.bool_), np.zeros(n, dtype=np.bool_)
        marks = np.zeros(self._orders.size, dtype=np.int8)
        deferred, missing = np.empty(n, dtype=np.int64), np.empty((n, 2), dtype=np.int64)
        hour0, offsets = self._utc_offsets(batch.t)
        positions = np.arange(n)
        slots, orders, zones = self._slots, self._orders, self._zones
        while len(positions):
            n_deferred, n_missing = decide(
                positions, batch.order, batch.slot, batch.forced_slow, batch.subject,
                batch.t, batch.lat, batch.lon, batch.accuracy_m, batch.battery_pct, float(now),
                orders.matrix(_FLOAT64), orders.matrix(_INT64), orders.matrix(_BOOL),
                slots.matrix(_FLOAT64), slots.matrix(_BOOL),
                zones.matrix(_FLOAT64), zones.matrix(_INT64), zones.matrix(_BOOL),
                self._edges.matrix(_FLOAT64), self._masks, hour0, offsets,
                # as floats, whatever the settings gave: an int compiles the pass again
                float(rules.max_future_skew_s), float(rules.battery_low_pct),
                float(rules.max_speed_mps), float(rules.contact_window_s),
                float(rules.critical_after_s), float(rules.hysteresis_s), slow, steady, marks,
                deferred, missing,
            )  # fmt: skip
            for row, i in sorted(set(map(tuple, missing[:n_missing].tolist()))):
                self._add_edges(row, i)
            positions = deferred[:n_deferred].copy()
            marks[batch.order[positions]] = UNDECIDED
        return slow, steady

    def _utc_offsets(self, t: F64) -> tuple[int, F64]:
        """(first hour, Amsterdam's UTC offset in seconds for each hour from it) over the times
        of a batch, for the schedules; a fix in an hour past the table's end takes the scalar
        path."""
        if len(self._masks) == 0 or len(t) == 0:
            return 0, np.zeros(0, dtype=np.float64)  # writable: a read-only one compiles again
        if len(t) <= _FEW:  # a numpy reduction costs ~1.5 us however short the array
            times = t.tolist()
            low, high = min(times), max(times)
        else:
            low, high = float(t.min()), float(t.max())
        if not (math.isfinite(low) and math.isfinite(high)):  # rare: a signal to be refused
            finite = t[np.isfinite(t)]
            if len(finite) == 0:
                return 0, np.zeros(0, dtype=np.float64)
            low, high = float(finite.min()), float(finite.max())
        first = int(low // 3600)
        last = min(int(high // 3600), first + _MAX_SCHEDULE_HOURS)
        return first, _offset_table(first, last)

    def _add_edges(self, row: int, i: int) -> None:
        """The edges of the polygon in zone row `row` of order `i` into the edge table, the
        first time a fix comes near its box, or its copy already there."""
        if self._zones.col["edge_count"][row]:
            return  # added for an earlier pass
        shape = self.orders[i].zones[row - int(self._orders.col["zone_start"][i])].shape
        assert isinstance(shape, PolygonShape)
        known = self._edge_ranges.get(shape)
        if known is None:
            count = shape.edge_count
            first = self._edges.add(count)
            shape.write_edges(self._edges.matrix(_FLOAT64), first)
            known = self._edge_ranges[shape] = (first, count)
        self._zones.col["edge_start"][row], self._zones.col["edge_count"][row] = known
