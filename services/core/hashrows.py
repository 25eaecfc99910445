"""Row numbers by a 64-bit key, looked up for a whole batch in one compiled call.

A partition finds the row of every signal's order. One dict lookup a signal reads the dict's
entry and the stored key, cache misses apiece at 100k orders; the keys here are the order ids'
hashes, in one open-addressing table (linear probing, at most half full) that a batch probes
in one compiled loop.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from geo.edges import PREFETCH_AHEAD, compiled, prefetch_row

I64 = npt.NDArray[np.int64]

EMPTY = -1  # services.core.signal_columns.id_hash never gives -1


@compiled
def _find(table: I64, table_rows: I64, keys: I64, rows: I64) -> None:
    """The row of each key in `rows` (-1: never added), by linear probing. Compiled, with the
    slots of later keys asked for early: at 100k orders the table is ~4 MB, a cache miss a
    key, and numpy's form took a dozen calls a probe round, ~120 ns a key in all."""
    mask = len(table) - 1
    count = len(keys)
    for k in range(count):
        if k + PREFETCH_AHEAD < count:
            ahead = keys[k + PREFETCH_AHEAD] & mask
            prefetch_row(table, ahead)
            prefetch_row(table_rows, ahead)
        key = keys[k]
        slot = key & mask
        rows[k] = EMPTY
        while table[slot] != EMPTY:
            if table[slot] == key:
                rows[k] = table_rows[slot]
                break
            slot = (slot + 1) & mask


class HashRows:
    def __init__(self) -> None:
        self._keys: I64 = np.full(16, EMPTY, dtype=np.int64)
        self._rows: I64 = np.zeros(16, dtype=np.int64)
        self._count = 0
        # False once two keys added were equal: the caller's ids then collide in 64 bits, and
        # only a lookup by id can tell them apart.
        self.distinct = True

    def __len__(self) -> int:
        return self._count

    def add(self, key: int, row: int) -> None:
        """Remember `row` for `key` (a hash, never -1). A key already present keeps its row and
        clears `distinct`."""
        if key == EMPTY:
            raise ValueError("-1 marks an empty slot and is never a hash")
        if 2 * (self._count + 1) > len(self._keys):
            self._grow()
        self._put(key, row)

    def find(self, keys: I64) -> I64:
        """The row of each key; -1 for a key never added."""
        rows = np.empty(len(keys), dtype=np.int64)
        _find(self._keys, self._rows, keys, rows)
        return rows

    def _put(self, key: int, row: int) -> None:
        table, mask = self._keys, len(self._keys) - 1
        slot = key & mask
        while True:
            stored = int(table[slot])
            if stored == EMPTY:
                table[slot], self._rows[slot] = key, row
                self._count += 1
                return
            if stored == key:
                self.distinct = False
                return
            slot = (slot + 1) & mask

    def _grow(self) -> None:
        keys, rows = self._keys, self._rows
        self._keys = np.full(2 * len(keys), EMPTY, dtype=np.int64)
        self._rows = np.zeros(2 * len(keys), dtype=np.int64)
        self._count = 0
        used = keys != EMPTY
        for key, row in zip(keys[used].tolist(), rows[used].tolist(), strict=True):
            self._put(key, row)
