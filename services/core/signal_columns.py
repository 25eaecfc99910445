"""The numbers of a batch's signals, column-wise, read in one compiled pass over their msgpack
encoding.

`Partition.batch` needs, for every signal, the hashes of its order id and device id, what it
is (fix or device event, subject or protected person), and its time, position, accuracy and
battery level as float columns. Read attribute by attribute from the signal objects, that took
ten `map` passes over the batch, ~0.45 us a signal at 100k orders, a third of the batch path.
msgspec encodes the whole batch in one C call (~0.18 us a signal), and `read_signals` reads
every column from those bytes in one pass.

Ids are compared by `id_hash`, a 64-bit hash of their UTF-8 bytes computed here in both places
(where a partition stores an order, and in this pass), so the pass never builds a str. It is
keyed by Python's own per-process hash secret, as `hash()` of the id was, but it is no
cryptographic hash: the ids come from the service's own topics (fix_router routes a signal only
to an order it knows, with that order's devices).

A signal the compiled pass cannot read (a field of another type than its struct declares, say)
is read from its object instead.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import msgspec
import numba
import numpy as np
import numpy.typing as npt
from llvmlite import ir
from numba.core import types

from geo.edges import compiled
from services.core.model import Fix, HealthEvent, Signal

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Bool = npt.NDArray[np.bool_]

# Python's hash of a str is keyed per process (PYTHONHASHSEED); so is this one, by it.
_KEY = np.uint64(hash("breachwatch signal columns") & 0xFFFF_FFFF_FFFF_FFFF)

# What a signal is (`SignalColumns.kind`): not read (the caller reads the object), a Fix, a
# HealthEvent.
UNREAD, FIX, EVENT = 0, 1, 2

# The fields of each struct, in the order msgspec encodes them (each a key then its value);
# the pass reads them in this order.
FIX_FIELDS = ("device_id", "role", "person_id", "t", "lat", "lon", "accuracy_m", "battery_pct")
EVENT_FIELDS = ("device_id", "role", "person_id", "t", "type", "battery_pct")
for _struct, _fields in ((Fix, FIX_FIELDS), (HealthEvent, EVENT_FIELDS)):
    if _struct.__struct_encode_fields__ != _fields:
        raise ImportError(f"{_struct.__name__}'s fields changed: update {__name__}")
_SUBJECT = np.frombuffer(b"subject", dtype=np.uint8)
_NAN_BITS = np.uint64(0x7FF8_0000_0000_0000)
_KIND_OF: dict[type, int] = {Fix: FIX, HealthEvent: EVENT}


def _word_loader(big_endian: bool) -> Any:
    """An intrinsic for compiled code: the 8 bytes of a uint8 vector from `pos` as one
    unsigned word, in one unaligned load (byte by byte, the pass took twice as long)."""

    def load(typingctx: Any, buf: Any, pos: Any) -> Any:
        if not (
            isinstance(buf, types.Array)
            and buf.ndim == 1
            and buf.dtype == types.uint8
            and isinstance(pos, types.Integer)
        ):
            return None

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            made = context.make_array(signature.args[0])(context, builder, args[0])
            index = context.cast(builder, args[1], signature.args[1], types.intp)
            address = builder.gep(made.data, [index])
            word = builder.load(builder.bitcast(address, ir.IntType(64).as_pointer()), align=1)
            return builder.bswap(word) if big_endian else word

        return types.uint64(buf, pos), codegen

    return numba.extending.intrinsic(load)


# What compiled callers see: (bytes, position) -> the word there; the caller keeps the 8
# bytes inside the vector.
_native_word = cast(Callable[[U8, int], np.uint64], _word_loader(big_endian=False))
_big_endian_word = cast(Callable[[U8, int], np.uint64], _word_loader(big_endian=True))


@compiled
def _mix(h: np.uint64) -> np.uint64:
    """splitmix64's finaliser: every input bit moves every output bit."""
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


@compiled
def _hash(buf: U8, start: int, length: int, key: np.uint64) -> np.uint64:
    """The keyed hash of the bytes: their words and the last few bytes mixed in one by one;
    never the bit pattern of -1."""
    h = _mix(key ^ np.uint64(length))
    end = start + length
    k = start
    while k + 8 <= end:
        h = _mix(h ^ _native_word(buf, k))
        k += 8
    tail = np.uint64(0)
    while k < end:
        tail = (tail << np.uint64(8)) | np.uint64(buf[k])
        k += 1
    h = _mix(h ^ tail ^ np.uint64(0x9E3779B97F4A7C15))
    if h == np.uint64(0xFFFF_FFFF_FFFF_FFFF):
        h = np.uint64(0xFFFF_FFFF_FFFF_FFFE)
    return h


def id_hash(identifier: str) -> int:
    """The hash `read_signals` gives the id, as a signed 64-bit int (never -1)."""
    buf = np.frombuffer(identifier.encode(), dtype=np.uint8)
    return int(np.array(_hash(buf, 0, len(buf), _KEY), dtype=np.uint64).view(np.int64))


@compiled
def _length(buf: U8, pos: int, size: int) -> int:
    """A big-endian unsigned length of `size` bytes at `pos`."""
    value = 0
    for k in range(pos, pos + size):
        value = value * 256 + int(buf[k])
    return value


@compiled
def _skip(buf: U8, pos: int) -> int:
    """Where the msgpack value at `pos` ends (with everything in it); -1 past the buffer or on
    a byte this pass does not know."""
    left = 1
    end = len(buf)
    while left:
        if pos >= end:
            return -1
        left -= 1
        b = int(buf[pos])
        pos += 1
        if b <= 0x7F or b >= 0xE0 or 0xC0 <= b <= 0xC3:  # fixint, nil, bool
            continue
        if 0x80 <= b <= 0x8F:  # fixmap
            left += 2 * (b & 0x0F)
        elif 0x90 <= b <= 0x9F:  # fixarray
            left += b & 0x0F
        elif 0xA0 <= b <= 0xBF:  # fixstr
            pos += b & 0x1F
        elif b in (0xCA, 0xCE, 0xD2):  # float32, uint32, int32
            pos += 4
        elif b in (0xCB, 0xCF, 0xD3):  # float64, uint64, int64
            pos += 8
        elif b in (0xCC, 0xD0):
            pos += 1
        elif b in (0xCD, 0xD1):
            pos += 2
        elif b in (0xD9, 0xC4):  # str8, bin8
            pos += 1 + _length(buf, pos, 1)
        elif b in (0xDA, 0xC5):
            pos += 2 + _length(buf, pos, 2)
        elif b in (0xDB, 0xC6):
            pos += 4 + _length(buf, pos, 4)
        elif b == 0xDC:
            left += _length(buf, pos, 2)
            pos += 2
        elif b == 0xDD:
            left += _length(buf, pos, 4)
            pos += 4
        elif b == 0xDE:
            left += 2 * _length(buf, pos, 2)
            pos += 2
        elif b == 0xDF:
            left += 2 * _length(buf, pos, 4)
            pos += 4
        else:
            return -1  # ext types: never in a signal
    return pos if pos <= end else -1


@compiled
def _str(buf: U8, pos: int) -> tuple[int, int]:
    """(start, length) of the str at `pos`; length -1 for anything else, or when `pos` is -1
    already."""
    if pos < 0:
        return pos, -1
    b = int(buf[pos])
    if 0xA0 <= b <= 0xBF:
        return pos + 1, b & 0x1F
    if b == 0xD9:
        return pos + 2, _length(buf, pos + 1, 1)
    if b == 0xDA:
        return pos + 3, _length(buf, pos + 1, 2)
    if b == 0xDB:
        return pos + 5, _length(buf, pos + 1, 4)
    return pos, -1


@compiled
def _array(buf: U8, pos: int) -> tuple[int, int]:
    """(start of its first item, item count) of the array at `pos`; count -1 for anything
    else."""
    b = int(buf[pos])
    if 0x90 <= b <= 0x9F:
        return pos + 1, b & 0x0F
    if b == 0xDC:
        return pos + 3, _length(buf, pos + 1, 2)
    if b == 0xDD:
        return pos + 5, _length(buf, pos + 1, 4)
    return pos, -1


@compiled
def _after_key(buf: U8, pos: int, name_length: int) -> int:
    """Where the value of the key at `pos` starts; -1 when the key is not a str of that length
    (or `pos` is -1 already)."""
    if pos < 0 or buf[pos] != 0xA0 | name_length:
        return -1
    return pos + 1 + name_length


@compiled
def _after_str(buf: U8, pos: int) -> int:
    """Where the str at `pos` ends; -1 when it is not a str (or `pos` is -1 already)."""
    if pos < 0:
        return -1
    start, length = _str(buf, pos)
    return start + length if length >= 0 else -1


@compiled
def _float_bits(buf: U8, pos: int) -> tuple[int, np.uint64]:
    """(where it ends, its bits) of the float64 at `pos`; -1 for anything else (an int, say:
    the object tells), or when `pos` is -1 already."""
    if pos < 0 or buf[pos] != 0xCB:
        return -1, np.uint64(0)
    return pos + 9, _big_endian_word(buf, pos + 1)


@compiled
def _is_subject(buf: U8, start: int, length: int) -> bool:
    if length != len(_SUBJECT):
        return False
    for k in range(length):  # noqa: SIM110 (all() of a generator does not compile)
        if buf[start + k] != _SUBJECT[k]:
            return False
    return True


@compiled
def _read_pairs(
    buf: U8, pos: int, first: int, stop: int, key: np.uint64, kind: npt.NDArray[np.int8],
    order_hash: npt.NDArray[np.uint64], device_hash: npt.NDArray[np.uint64], subject: Bool,
    numbers: npt.NDArray[np.uint64], battery: F64,
) -> tuple[int, int]:  # fmt: skip
    """The (order_id, signal) pairs of an encoded list from the one at `pos` (row `first`)
    into their rows, by the kind of signal the caller found: a map of its fields (FIX_FIELDS
    or EVENT_FIELDS). Stops at a pair not laid out so, or not of a known kind: returns (its
    row, its position), or (-1, the end) when every row was read. Written out field by field
    in one function, which does nothing else: a loop over a table of the fields, a call a
    signal with the columns as arguments, or skipping an odd pair in here made it 2 to 5
    times slower."""
    for j in range(first, stop):
        item, is_fix = pos, kind[j] == FIX
        if kind[j] == UNREAD or buf[item] != 0x92:  # a pair
            return j, item
        start, length = _str(buf, item + 1)
        fields = len(FIX_FIELDS) if is_fix else len(EVENT_FIELDS)
        if length < 0 or buf[start + length] != 0x80 | fields:  # a map of every field
            return j, item
        order_hash[j] = _hash(buf, start, length, key)
        start, length = _str(buf, _after_key(buf, start + length + 1, 9))  # device_id
        if length < 0:
            return j, item
        device_hash[j] = _hash(buf, start, length, key)
        start, length = _str(buf, _after_key(buf, start + length, 4))  # role
        if length < 0:
            return j, item
        subject[j] = _is_subject(buf, start, length)
        pos = _after_str(buf, _after_key(buf, start + length, 9))  # person_id
        pos, numbers[0, j] = _float_bits(buf, _after_key(buf, pos, 1))  # t
        if is_fix:
            pos, numbers[1, j] = _float_bits(buf, _after_key(buf, pos, 3))  # lat
            pos, numbers[2, j] = _float_bits(buf, _after_key(buf, pos, 3))  # lon
            pos, numbers[3, j] = _float_bits(buf, _after_key(buf, pos, 10))  # accuracy_m
        else:
            pos = _after_str(buf, _after_key(buf, pos, 4))  # type
            numbers[1:, j] = _NAN_BITS  # no position
        pos = _after_key(buf, pos, 11)  # battery_pct
        if pos < 0:
            return j, item
        level = buf[pos]
        if level == 0xC0:
            battery[j] = np.nan  # none
        elif level <= 0x7F:
            battery[j] = level
        else:
            return j, item  # never above 100 in a valid signal: the object tells
        pos += 1
    return -1, pos


@dataclass
class SignalColumns:
    """One row per (order_id, signal) pair, in order, every row set (`read_signals` reads the
    rows its compiled pass left UNREAD from their objects)."""

    order_hash: I64
    device_hash: I64
    kind: npt.NDArray[np.int8]
    subject: Bool
    t: F64
    lat: F64
    lon: F64
    accuracy_m: F64
    battery_pct: F64

    def take(self, rows: I64) -> SignalColumns:
        """These rows only, in this order."""
        return SignalColumns(
            order_hash=self.order_hash[rows], device_hash=self.device_hash[rows],
            kind=self.kind[rows], subject=self.subject[rows], t=self.t[rows],
            lat=self.lat[rows], lon=self.lon[rows], accuracy_m=self.accuracy_m[rows],
            battery_pct=self.battery_pct[rows],
        )  # fmt: skip


_encoder = msgspec.msgpack.Encoder()
# Pairs encoded at a time: the buffer stays within the CPU's L2 cache, and a catch-up batch of
# 60k signals never holds ~8 MB of it at once.
_CHUNK = 4096


def read_signals(items: Sequence[tuple[str, Signal]], signals: list[Signal]) -> SignalColumns:
    """The columns of (order_id, signal) pairs; `signals` are the pairs' signals, in order."""
    count = len(items)
    # t, lat, lon and accuracy_m, a row each, as the bits of their float64 values
    numbers = np.empty((4, count), dtype=np.uint64)
    t, lat, lon, accuracy_m = numbers.view(np.float64)
    read = SignalColumns(
        order_hash=np.empty(count, dtype=np.int64), device_hash=np.empty(count, dtype=np.int64),
        kind=_kinds_of(signals), subject=np.empty(count, dtype=np.bool_), t=t, lat=lat,
        lon=lon, accuracy_m=accuracy_m, battery_pct=np.empty(count, dtype=np.float64),
    )  # fmt: skip
    for first in range(0, count, _CHUNK):
        stop = min(first + _CHUNK, count)
        _read_chunk(items[first:stop] if stop - first < count else items, first, read, numbers)
    for k in np.flatnonzero(read.kind == UNREAD).tolist():
        _read_object(read, k, items[k][0], signals[k])
    return read


def _read_chunk(
    pairs: Sequence[tuple[str, Signal]], first: int, read: SignalColumns,
    numbers: npt.NDArray[np.uint64],
) -> None:  # fmt: skip
    """Rows `first` on, from these pairs' encoding; rows it cannot read are left UNREAD."""
    stop = first + len(pairs)
    try:
        encoded = _encoder.encode(pairs)
    except (TypeError, ValueError, OverflowError):
        read.kind[first:stop] = UNREAD  # a value msgpack cannot carry: the objects tell
        return
    buf = np.frombuffer(encoded, dtype=np.uint8)
    pos, listed = _array(buf, 0)
    row = first if listed == len(pairs) else -1
    while row >= 0:
        row, pos = _read_pairs(
            buf, pos, row, stop, _KEY, read.kind, read.order_hash.view(np.uint64),
            read.device_hash.view(np.uint64), read.subject, numbers, read.battery_pct,
        )  # fmt: skip
        if row >= 0:  # rare: the object tells
            read.kind[row] = UNREAD
            pos, row = _skip(buf, pos), row + 1
            if pos < 0:
                break  # never, for what msgspec encodes
    if listed != len(pairs) or pos != len(buf):  # never, for what msgspec encodes
        read.kind[first:stop] = UNREAD


def _read_object(read: SignalColumns, k: int, order_id: str, signal: Signal) -> None:
    """Row `k` from the signal's object, where the compiled pass could not read it: a field
    of another type than its struct declares (an int time, say), or another type of signal
    (then taken as an event: not a fix, so never decided in bulk)."""
    read.order_hash[k] = id_hash(order_id)
    read.device_hash[k] = id_hash(signal.device_id)
    read.subject[k] = signal.role == "subject"
    read.t[k] = signal.t
    if isinstance(signal, Fix):
        read.kind[k] = FIX
        read.lat[k], read.lon[k], read.accuracy_m[k] = signal.lat, signal.lon, signal.accuracy_m
    else:
        read.kind[k] = EVENT
        read.lat[k] = read.lon[k] = read.accuracy_m[k] = math.nan
    read.battery_pct[k] = math.nan if signal.battery_pct is None else signal.battery_pct


def _kinds_of(signals: list[Signal]) -> npt.NDArray[np.int8]:
    """FIX, EVENT or UNREAD (any other type) for each signal."""
    types = list(map(type, signals))
    if types.count(Fix) == len(types):  # most batches: `list.count` finds it in C
        return np.full(len(types), FIX, dtype=np.int8)
    return np.fromiter(map(_KIND_OF.get, types, itertools.repeat(UNREAD)), np.int8, len(types))
