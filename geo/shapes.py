"""Zone shapes compiled for the hot path: signed distance from a point to the zone's edge.

A shape answers `signed_distance(lat, lon, within)`: metres to the edge, negative inside. When the
point is farther than `within` from the shape, a cheap lower bound that is itself >= `within` may
come back instead of the exact figure; callers pass the largest distance they care about (the
accuracy disc plus the warning buffer), so far-away fixes cost one bounding-box test.

Circles are kept as centre and radius (no polygon), and a municipality is compiled once per
process and shared by every order that names it.
"""

from __future__ import annotations

import itertools
import math
from array import array
from functools import cache
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.validation import explain_validity

from geo import municipalities
from geo.edges import signed_distance_to_rings, write_ring_edges
from geo.projection import MAX_ABS_LATITUDE, LocalPlane, wrap_longitude_delta

F64 = npt.NDArray[np.float64]

MAX_VERTICES = 10_000
MAX_EXTENT_M = 200_000.0
MAX_RADIUS_M = 50_000.0
MIN_AREA_M2 = 1.0


class ZoneGeometryError(ValueError):
    """A zone that cannot be compiled; `field` names the offending part of the zone."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class Shape(Protocol):
    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(min_lon, min_lat, max_lon, max_lat) in degrees."""
        ...

    def signed_distance(self, lat: float, lon: float, within: float) -> float: ...


class CircleShape:
    __slots__ = ("kx", "ky", "lat0", "lon0", "radius_m")

    def __init__(self, lat0: float, lon0: float, radius_m: float) -> None:
        plane = LocalPlane.at(lat0, lon0)
        self.lat0, self.lon0, self.radius_m = lat0, lon0, radius_m
        self.kx, self.ky = plane.kx, plane.ky

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        dlat = self.radius_m / self.ky
        dlon = self.radius_m / self.kx
        return (self.lon0 - dlon, self.lat0 - dlat, self.lon0 + dlon, self.lat0 + dlat)

    def signed_distance(self, lat: float, lon: float, within: float = math.inf) -> float:
        dlon = lon - self.lon0
        if dlon > 180.0 or dlon < -180.0:
            dlon = wrap_longitude_delta(dlon)
        dx = dlon * self.kx
        dy = (lat - self.lat0) * self.ky
        return math.sqrt(dx * dx + dy * dy) - self.radius_m


class PolygonShape:
    """A Polygon or MultiPolygon in its own local metric plane, ready for repeated queries.

    Kept as flat coordinate arrays, one a ring, and measured by a compiled loop over its edges
    (geo.edges), whatever its size: ~1.2 us for 20 vertices, ~1.9 us for 100 and ~15 us for
    2,000, against ~12, ~11 and ~31 us for a shapely Point and two GEOS calls (GEOS's distance
    walks every edge too). Nor does it keep a GEOS polygon, its boundary and their prepared
    indexes. The core's bulk decision reads the same edges from its edge table (`edge_rows`).
    """

    # No copy of the GeoJSON it came from: at 100k orders that was ~60 MB nobody read (the
    # order's own record keeps it). A weak reference: the core shares one copy of a shape's
    # edge rows between the orders that name it (a municipality), for as long as it lives.
    __slots__ = ("__weakref__", "_parts", "bounds", "edge_count", "plane", "xy_bounds")

    def __init__(self, plane: LocalPlane, rings: _MetricRings) -> None:
        """`rings`: the polygon's coordinates in `plane`, per part shell first."""
        self.plane = plane
        # From the shells' coordinates: cheaper than asking GEOS (holes lie within their shell).
        xs = [x for part in rings for x, _ in part[0]]
        ys = [y for part in rings for _, y in part[0]]
        minx, miny, maxx, maxy = min(xs), min(ys), max(xs), max(ys)
        self.xy_bounds: tuple[float, float, float, float] = (minx, miny, maxx, maxy)
        min_lat, min_lon = plane.to_latlon(minx, miny)
        max_lat, max_lon = plane.to_latlon(maxx, maxy)
        self.bounds = (min_lon, min_lat, max_lon, max_lat)
        # How many edges all its rings have (each is closed): the rows `write_edges` writes.
        self.edge_count = sum(len(ring) - 1 for part in rings for ring in part)
        self._parts: _FlatParts = tuple(
            tuple(array("d", itertools.chain.from_iterable(ring)) for ring in part)
            for part in rings
        )

    @property
    def metric(self) -> Polygon | MultiPolygon:
        """The zone as a shapely geometry in `plane`, for checks and drawing (not the hot path)."""
        polygons = []
        for part in self._parts:
            shell, *holes = (list(zip(ring[0::2], ring[1::2], strict=True)) for ring in part)
            polygons.append(Polygon(shell, holes))
        return polygons[0] if len(polygons) == 1 else MultiPolygon(polygons)

    def write_edges(self, edges: F64, first: int) -> None:
        """The polygon's edges in `plane`, a row (x1, y1, x2, y2) each, every ring's (holes and
        islands among them), into `edges` from row `first`: the bulk decision's edge table
        (services/core/bulk.py) takes them when a fix first comes near the polygon."""
        for ring in itertools.chain.from_iterable(self._parts):
            first += write_ring_edges(edges, first, ring)

    def edge_rows(self) -> F64:
        """`write_edges` into an array of their own."""
        rows = np.empty((self.edge_count, 4), dtype=np.float64)
        self.write_edges(rows, 0)
        return rows

    def signed_distance(self, lat: float, lon: float, within: float = math.inf) -> float:
        x, y = self.plane.to_xy(lat, lon)
        minx, miny, maxx, maxy = self.xy_bounds
        outside_box = max(minx - x, x - maxx, miny - y, y - maxy)
        if outside_box >= within:
            return outside_box  # a lower bound, and far enough that nobody needs more
        return signed_distance_to_rings(itertools.chain.from_iterable(self._parts), x, y)


# Per part, its rings (shell first, then holes), each closed: as (x, y) lists, and as flat
# x, y, x, y, ... arrays.
_MetricRings = list[list[list[tuple[float, float]]]]
_FlatParts = tuple[tuple["array[float]", ...], ...]  # array is not subscriptable at run time


# ---------------------------------------------------------------- compilation

_PLAIN_NUMBERS = (float, int)


def _check_position(position: Any, field: str) -> tuple[float, float]:
    # The common case first, in a few comparisons: a polygon's vertices were most of the time
    # it took to compile an order. NaN and infinities fail the range test and bools are not
    # float or int, so everything else takes the checks below and their precise reasons.
    if type(position) is list and len(position) >= 2:
        lon, lat = position[0], position[1]
        if (
            type(lon) in _PLAIN_NUMBERS
            and type(lat) in _PLAIN_NUMBERS
            and -180.0 <= lon <= 180.0
            and -MAX_ABS_LATITUDE <= lat <= MAX_ABS_LATITUDE
        ):
            return float(lon), float(lat)
    if (
        not isinstance(position, list | tuple)
        or len(position) < 2
        or not all(isinstance(c, int | float) and not isinstance(c, bool) for c in position[:2])
    ):
        raise ZoneGeometryError(field, "a position is [longitude, latitude]")
    lon, lat = float(position[0]), float(position[1])
    if not (math.isfinite(lon) and math.isfinite(lat)):
        raise ZoneGeometryError(field, "coordinates must be finite numbers")
    if not -180.0 <= lon <= 180.0 or not -MAX_ABS_LATITUDE <= lat <= MAX_ABS_LATITUDE:
        raise ZoneGeometryError(field, f"position ({lon}, {lat}) is out of range")
    return lon, lat


def _check_rings(rings: Any, field: str) -> list[list[tuple[float, float]]]:
    if not isinstance(rings, list) or not rings:
        raise ZoneGeometryError(field, "a polygon is a non-empty list of linear rings")
    checked = []
    for r, ring in enumerate(rings):
        ring_field = f"{field}[{r}]"
        if not isinstance(ring, list) or len(ring) < 4:
            raise ZoneGeometryError(ring_field, "a linear ring needs at least 4 positions")
        points = [_check_position(p, f"{ring_field}[{i}]") for i, p in enumerate(ring)]
        if points[0] != points[-1]:
            raise ZoneGeometryError(ring_field, "ring is not closed (first position != last)")
        checked.append(points)
    return checked


def _polygon_parts(geometry: dict[str, Any]) -> list[list[list[tuple[float, float]]]]:
    kind = geometry.get("type")
    coordinates = geometry.get("coordinates")
    if kind == "Polygon":
        return [_check_rings(coordinates, "geometry.coordinates")]
    if kind == "MultiPolygon":
        if not isinstance(coordinates, list) or not coordinates:
            raise ZoneGeometryError("geometry.coordinates", "a MultiPolygon needs polygons")
        return [
            _check_rings(polygon, f"geometry.coordinates[{i}]")
            for i, polygon in enumerate(coordinates)
        ]
    raise ZoneGeometryError("geometry.type", f"unsupported geometry type {kind!r}")


def compile_polygon(geometry: dict[str, Any]) -> PolygonShape:
    parts = _polygon_parts(geometry)
    vertices = sum(len(ring) for part in parts for ring in part)
    if vertices > MAX_VERTICES:
        raise ZoneGeometryError(
            "geometry.coordinates", f"{vertices} vertices; at most {MAX_VERTICES}"
        )
    lons = [lon for part in parts for ring in part for lon, _ in ring]
    lats = [lat for part in parts for ring in part for _, lat in ring]
    # Centre the plane on the middle of the zone, unwrapping longitudes across the antimeridian.
    ref_lon = lons[0]
    unwrapped = [ref_lon + wrap_longitude_delta(lon - ref_lon) for lon in lons]
    lon0 = wrap_longitude_delta((min(unwrapped) + max(unwrapped)) / 2)
    plane = LocalPlane.at((min(lats) + max(lats)) / 2, lon0)
    rings = [[[plane.to_xy(lat, lon) for lon, lat in ring] for ring in part] for part in parts]
    # shapely.polygons, not Polygon(): the class checks each coordinate in Python (9.5 against
    # 6.6 us for a square), and this runs for every order an evaluator loads.
    metric_parts = [shapely.polygons(part[0], holes=part[1:] or None) for part in rings]
    metric: Polygon | MultiPolygon = (
        metric_parts[0] if len(metric_parts) == 1 else MultiPolygon(metric_parts)
    )
    if not metric.is_valid:
        raise ZoneGeometryError("geometry.coordinates", f"invalid: {explain_validity(metric)}")
    if metric.area < MIN_AREA_M2:
        raise ZoneGeometryError("geometry.coordinates", "zero area")
    shape = PolygonShape(plane, rings)
    minx, miny, maxx, maxy = shape.xy_bounds
    if max(maxx - minx, maxy - miny) > MAX_EXTENT_M:
        raise ZoneGeometryError(
            "geometry.coordinates", f"zone is wider than {MAX_EXTENT_M / 1000:.0f} km"
        )
    return shape


def compile_circle(geometry: dict[str, Any], radius_m: float | None) -> CircleShape:
    lon, lat = _check_position(geometry.get("coordinates"), "geometry.coordinates")
    if radius_m is None:
        raise ZoneGeometryError("radius_m", "a Point zone needs radius_m")
    if not math.isfinite(radius_m) or radius_m <= 0 or radius_m > MAX_RADIUS_M:
        raise ZoneGeometryError("radius_m", f"must be > 0 and at most {MAX_RADIUS_M:.0f} m")
    return CircleShape(lat, lon, radius_m)


@cache
def municipality_shape(code: str) -> PolygonShape:
    """One compiled shape per municipality per process, shared by every order naming it."""
    try:
        geometry = municipalities.geometry(code)
    except KeyError:
        raise ZoneGeometryError("municipality_code", f"unknown CBS code {code!r}") from None
    return compile_polygon(geometry)


def compile_shape(
    geometry: dict[str, Any] | None, radius_m: float | None, municipality_code: str | None
) -> Shape:
    """The shape of a zone of the order contract: exactly one of geometry or municipality."""
    if (geometry is None) == (municipality_code is None):
        raise ZoneGeometryError(
            "geometry", "a zone has exactly one of geometry or municipality_code"
        )
    if municipality_code is not None:
        return municipality_shape(municipality_code)
    assert geometry is not None
    if geometry.get("type") == "Point":
        return compile_circle(geometry, radius_m)
    return compile_polygon(geometry)


def circle_polygon(lat0: float, lon0: float, radius_m: float, vertices: int = 48) -> dict[str, Any]:
    """A circle zone as a GeoJSON Polygon, for drawing; the engine keeps the exact circle."""
    plane = LocalPlane.at(lat0, lon0)
    ring = []
    for i in range(vertices + 1):
        angle = 2 * math.pi * (i % vertices) / vertices
        lat, lon = plane.to_latlon(radius_m * math.cos(angle), radius_m * math.sin(angle))
        ring.append([round(lon, 6), round(lat, 6)])
    return {"type": "Polygon", "coordinates": [ring]}
