"""Signed distance from a point to a polygon given as its edges, compiled, and the one way this
project compiles a function (numba).

A small polygon (geo.shapes) is measured by a loop over its edges: in Python that loop took
~4.6 us for 12 edges, compiled it takes ~0.35 us a call from Python, and the core's compiled
bulk decision (services/core/bulk.py) runs the same function over its edge table without
leaving machine code. One implementation for both, held to GEOS by the property tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba
import numba.extending
import numpy as np
import numpy.typing as npt

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


@compiled
def signed_distance_to_edges(edges: F64, first: int, count: int, x: float, y: float) -> float:
    """Distance from (x, y) to the nearest of the `count` edges from row `first` of `edges`
    (rows of x1, y1, x2, y2: every ring of the polygon, holes and islands among them),
    negative inside by even-odd crossings. On the edge itself it is 0.0, never -0.0."""
    nearest_sq = math.inf
    inside = False
    for e in range(first, first + count):
        x1, y1, x2, y2 = edges[e, 0], edges[e, 1], edges[e, 2], edges[e, 3]
        dx, dy = x2 - x1, y2 - y1
        px, py = x - x1, y - y1
        length_sq = dx * dx + dy * dy
        t = (px * dx + py * dy) / length_sq if length_sq > 0.0 else 0.0
        t = 0.0 if t < 0.0 else 1.0 if t > 1.0 else t
        ex, ey = px - t * dx, py - t * dy
        distance_sq = ex * ex + ey * ey
        if distance_sq < nearest_sq:
            nearest_sq = distance_sq
        if ((y1 > y) != (y2 > y)) and x < x1 + py * dx / dy:
            inside = not inside
    distance = math.sqrt(nearest_sq)
    return -distance if inside and distance > 0.0 else distance
