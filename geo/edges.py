"""Signed distance from a point to a polygon given as its edges, compiled, and the one way this
project compiles a function (numba).

A polygon (geo.shapes) is measured by a loop over its edges: in Python that loop took ~4.6 us
for 12 edges, compiled it takes ~0.35 us a call from Python. The core's compiled bulk
decision (services/core/bulk.py) runs it over its edge table without leaving machine code; from
Python it runs over the polygon's rings as they are kept. One edge step for both, held to GEOS
by the property tests.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

import numba
import numba.extending
import numpy as np
import numpy.typing as npt
from llvmlite import ir
from numba.core import types

F64 = npt.NDArray[np.float64]
_Fn = TypeVar("_Fn", bound=Callable[..., Any])


def compiled(fn: _Fn) -> _Fn:
    """`fn` compiled to machine code on its first call (cached on disk beside its source, or
    in numba's user cache where it may not write there).

    error_model="numpy": a float division by zero gives inf or NaN, as numpy and the guarded
    arithmetic elsewhere do, instead of raising."""
    return cast(_Fn, numba.njit(cache=True, nogil=True, error_model="numpy")(fn))


def also_compiled(fn: _Fn) -> _Fn:
    """`fn` stays a plain Python function for Python callers (no dispatch cost), and compiled
    code that calls it compiles it in: one definition for both."""
    return numba.extending.register_jitable(fn)


# Iterations: a loop over rows read at random asks for the rows of the iteration this far
# ahead (8, 16 and 32 measured alike in the bulk decision at 100k orders).
PREFETCH_AHEAD = 16


@numba.extending.intrinsic
def _prefetch_row(typingctx: Any, matrix: Any, row: Any) -> Any:
    """Compiled code only: ask the CPU to start loading row `row` of a C-ordered matrix (its
    first and last byte, so a row across two cache lines comes whole), or item `row` of a
    vector, and go on at once. A pass that reads rows at random from more memory than the
    caches hold waits ~100 ns a miss, one after another when each iteration's loads depend on
    the previous ones; asking for the rows of a later iteration (`PREFETCH_AHEAD`) early lets
    those waits overlap. An address past the end is harmless: a prefetch never faults."""
    if not (
        isinstance(matrix, types.Array)
        and matrix.ndim in (1, 2)
        and matrix.layout == "C"
        and isinstance(row, types.Integer)
    ):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        array_type = signature.args[0]
        made = context.make_array(array_type)(context, builder, args[0])
        row_stride = builder.extract_value(made.strides, 0)  # a row's bytes, or an item's
        index = context.cast(builder, args[1], signature.args[1], types.intp)
        start = builder.add(
            builder.ptrtoint(made.data, row_stride.type), builder.mul(index, row_stride)
        )
        last = builder.add(start, builder.sub(row_stride, ir.Constant(row_stride.type, 1)))
        byte_pointer = ir.IntType(8).as_pointer()
        int32 = ir.IntType(32)
        prefetch = builder.module.declare_intrinsic(
            "llvm.prefetch",
            [byte_pointer],
            ir.FunctionType(ir.VoidType(), [byte_pointer, int32, int32, int32]),
        )
        # read (0), keep in every cache level (3), data cache (1)
        flags = [ir.Constant(int32, 0), ir.Constant(int32, 3), ir.Constant(int32, 1)]
        for address in (start, last):
            builder.call(prefetch, [builder.inttoptr(address, byte_pointer), *flags])
        return context.get_dummy_value()

    return types.void(matrix, row), codegen


# What compiled callers see: (matrix, row) -> None
prefetch_row = cast(Callable[[npt.NDArray[Any], int], None], _prefetch_row)


@also_compiled
def _edge_step(
    x1: float, y1: float, x2: float, y2: float, x: float, y: float
) -> tuple[float, bool]:
    """(squared distance from (x, y) to the edge, whether the ray from (x, y) towards +x
    crosses it): one edge's share of a signed distance."""
    dx, dy = x2 - x1, y2 - y1
    px, py = x - x1, y - y1
    length_sq = dx * dx + dy * dy
    t = (px * dx + py * dy) / length_sq if length_sq > 0.0 else 0.0
    t = 0.0 if t < 0.0 else 1.0 if t > 1.0 else t
    ex, ey = px - t * dx, py - t * dy
    crosses = ((y1 > y) != (y2 > y)) and x < x1 + py * dx / dy
    return ex * ex + ey * ey, crosses


@also_compiled
def _signed(nearest_sq: float, inside: bool) -> float:
    distance = math.sqrt(nearest_sq)
    return -distance if inside and distance > 0.0 else distance


@compiled
def signed_distance_to_edges(edges: F64, first: int, count: int, x: float, y: float) -> float:
    """Distance from (x, y) to the nearest of the `count` edges from row `first` of `edges`
    (rows of x1, y1, x2, y2: every ring of the polygon, holes and islands among them),
    negative inside by even-odd crossings. On the edge itself it is 0.0, never -0.0."""
    nearest_sq = math.inf
    inside = False
    for e in range(first, first + count):
        distance_sq, crosses = _edge_step(
            edges[e, 0], edges[e, 1], edges[e, 2], edges[e, 3], x, y
        )  # fmt: skip
        if distance_sq < nearest_sq:
            nearest_sq = distance_sq
        if crosses:
            inside = not inside
    return _signed(nearest_sq, inside)


@compiled
def _ring_share(ring: Any, x: float, y: float) -> tuple[float, bool]:
    """(squared distance to the nearest edge, odd crossings) of a closed ring given flat as
    x, y, x, y, ... (an array.array: numba reads its buffer as it is)."""
    nearest_sq = math.inf
    odd = False
    for k in range(0, len(ring) - 2, 2):
        distance_sq, crosses = _edge_step(ring[k], ring[k + 1], ring[k + 2], ring[k + 3], x, y)
        if distance_sq < nearest_sq:
            nearest_sq = distance_sq
        if crosses:
            odd = not odd
    return nearest_sq, odd


@compiled
def write_ring_edges(edges: F64, first: int, ring: Any) -> int:
    """The edges of a closed ring given flat as x, y, x, y, ... (an array.array) into rows
    (x1, y1, x2, y2) of `edges` from row `first`; returns how many. Written in place: the
    bulk decision adds a polygon's edges mid-batch, and numpy's windows and copies of a small
    ring cost ~10 us of fixed calls."""
    count = len(ring) // 2 - 1
    for k in range(count):
        row = first + k
        edges[row, 0], edges[row, 1] = ring[2 * k], ring[2 * k + 1]
        edges[row, 2], edges[row, 3] = ring[2 * k + 2], ring[2 * k + 3]
    return count


def signed_distance_to_rings(rings: Iterable[array[float]], x: float, y: float) -> float:
    """`signed_distance_to_edges` over a polygon kept as its rings (every ring of every part),
    read where they are: a small polygon measured from Python needs no edge table of its own,
    which cost ~15 us to make, and memory for as long as the polygon lived."""
    nearest_sq = math.inf
    inside = False
    for ring in rings:
        distance_sq, odd = _ring_share(ring, x, y)
        nearest_sq = min(nearest_sq, distance_sq)
        inside ^= odd
    return _signed(nearest_sq, inside)
