"""Geometry against brute-force oracles: shapely with the accuracy disc buffered, and haversine."""

from __future__ import annotations

import itertools
import math
from array import array
from typing import Any

import numba
import numpy as np
import numpy.typing as npt
import pytest
import shapely
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from shapely.geometry import MultiPolygon, Point, Polygon

from geo.edges import prefetch_row, signed_distance_to_edges, signed_distance_to_rings
from geo.index import ZoneIndex
from geo.projection import LocalPlane, fast_distance_m, haversine_m
from geo.shapes import (
    CircleShape,
    PolygonShape,
    ZoneGeometryError,
    compile_polygon,
    municipality_shape,
)
from services.core.engine import CERTAIN, CLEAR, POSSIBLE, WARNING, disc_level

latitudes = st.floats(-80, 80)
longitudes = st.floats(-180, 179.999)


def star(cx: float, cy: float, radii: list[float], phase: float) -> list[tuple[float, float]]:
    """A star-shaped ring around (cx, cy): simple by construction."""
    n = len(radii)
    return [
        (
            cx + r * math.cos(phase + 2 * math.pi * i / n),
            cy + r * math.sin(phase + 2 * math.pi * i / n),
        )
        for i, r in enumerate(radii)
    ]


@st.composite
def metric_zones(draw: st.DrawFn) -> Polygon | MultiPolygon:
    """Random polygons with holes, and multipolygons (islands), in metres around (0, 0)."""
    parts = []
    for k in range(draw(st.integers(1, 2))):
        n = draw(st.integers(5, 24))
        radii = draw(st.lists(st.floats(400, 1500), min_size=n, max_size=n))
        cx = k * 5000.0
        shell = star(cx, 0, radii, draw(st.floats(0, 1)))
        holes = []
        if draw(st.booleans()):
            holes.append(star(cx, 0, [150.0 + 100 * (i % 2) for i in range(8)], 0.0))
        parts.append(Polygon(shell, holes))
    return parts[0] if len(parts) == 1 else MultiPolygon(parts)


def to_geojson(zone: Polygon | MultiPolygon, plane: LocalPlane) -> dict[str, object]:
    def ring(coords: object) -> list[list[float]]:
        return [list(reversed(plane.to_latlon(x, y))) for x, y in coords]  # type: ignore[attr-defined]

    polys = [zone] if isinstance(zone, Polygon) else list(zone.geoms)
    rings = [[ring(p.exterior.coords), *[ring(h.coords) for h in p.interiors]] for p in polys]
    if isinstance(zone, Polygon):
        return {"type": "Polygon", "coordinates": rings[0]}
    return {"type": "MultiPolygon", "coordinates": rings}


def oracle_level(zone: Polygon | MultiPolygon, x: float, y: float, r: float, buffer: float) -> int:
    disc = Point(x, y).buffer(r, quad_segs=64)
    if zone.contains(disc):
        return CERTAIN
    if zone.intersects(disc):
        return POSSIBLE
    if buffer > 0 and zone.buffer(buffer, quad_segs=64).intersects(disc):
        return WARNING
    return CLEAR


@settings(max_examples=300, deadline=None)
@given(
    zone=metric_zones(),
    lat0=st.floats(-70, 70),
    lon0=longitudes,
    x=st.floats(-2500, 8000),
    y=st.floats(-2500, 2500),
    r=st.floats(1, 300),
    buffer=st.sampled_from([0.0, 50.0, 300.0]),
)
def test_polygon_classification_matches_buffered_disc_oracle(
    zone: Polygon | MultiPolygon,
    lat0: float,
    lon0: float,
    x: float,
    y: float,
    r: float,
    buffer: float,
) -> None:
    assume(zone.is_valid)
    source_plane = LocalPlane.at(lat0, lon0)
    shape = compile_polygon(to_geojson(zone, source_plane))
    lat, lon = source_plane.to_latlon(x, y)
    # The oracle works in the compiled shape's own plane, on a polygon it builds itself.
    oracle_zone = shape.metric
    px, py = shape.plane.to_xy(lat, lon)
    d = shape.signed_distance(lat, lon, r + buffer)
    # Stay clear of the boundary bands where the disc's polygon approximation (and float noise)
    # may legitimately disagree.
    edge = oracle_zone.boundary.distance(Point(px, py))
    for band in (r, r + buffer):
        assume(abs(edge - band) > 0.01 * band + 0.05)
    assert disc_level(d, r, buffer) == oracle_level(oracle_zone, px, py, r, buffer)


@settings(max_examples=300, deadline=None)
@given(
    lat0=latitudes, lon0=longitudes, radius=st.floats(10, 5000), bearing=st.floats(0, 2 * math.pi),
    distance=st.floats(0, 10_000), r=st.floats(1, 500), buffer=st.sampled_from([0.0, 100.0]),
)  # fmt: skip
def test_circle_classification_matches_buffered_disc_oracle(
    lat0: float,
    lon0: float,
    radius: float,
    bearing: float,
    distance: float,
    r: float,
    buffer: float,
) -> None:
    circle = CircleShape(lat0, lon0, radius)
    plane = LocalPlane.at(lat0, lon0)
    x, y = distance * math.cos(bearing), distance * math.sin(bearing)
    lat, lon = plane.to_latlon(x, y)
    for band in (radius - r, radius + r, radius + r + buffer):
        assume(abs(distance - band) > 0.01 * (r + radius) + 0.05)
    zone = Point(0, 0).buffer(radius, quad_segs=256)
    assert disc_level(circle.signed_distance(lat, lon), r, buffer) == oracle_level(
        zone, x, y, r, buffer
    )


def edge_rows(zone: Polygon | MultiPolygon) -> list[tuple[float, float, float, float]]:
    """(x1, y1, x2, y2) of every edge of every ring, holes and islands included."""
    polygons = [zone] if isinstance(zone, Polygon) else list(zone.geoms)
    return [
        (x1, y1, x2, y2)
        for p in polygons
        for ring in (p.exterior, *p.interiors)
        for (x1, y1), (x2, y2) in itertools.pairwise(ring.coords)
    ]


@settings(max_examples=300, deadline=None)
@given(zone=metric_zones(), x=st.floats(-2500, 8000), y=st.floats(-2500, 2500))
def test_edge_distance_matches_geos(zone: Polygon | MultiPolygon, x: float, y: float) -> None:
    """The compiled edge loop that the core's bulk decision runs over its edge table and small
    polygons run over their rings, against GEOS on the same rings: holes and islands included,
    whatever the vertex count. It reads only its
    own rows of the edge table: the rows around them pass through the point and would give 0."""
    assume(zone.is_valid)
    edge = zone.boundary.distance(Point(x, y))
    truth = -edge if zone.contains(Point(x, y)) else edge
    own = edge_rows(zone)
    decoy = [(x - 1.0, y - 1.0, x + 1.0, y + 1.0)] * 3
    edges = np.array(decoy + own + decoy, dtype=np.float64)
    got = signed_distance_to_edges(edges, len(decoy), len(own), x, y)
    assert got == pytest.approx(truth, abs=1e-6)
    # the same loop over the rings as a polygon keeps them, flat
    polygons = [zone] if isinstance(zone, Polygon) else list(zone.geoms)
    rings = [
        array("d", itertools.chain.from_iterable(ring.coords))
        for p in polygons
        for ring in (p.exterior, *p.interiors)
    ]
    assert signed_distance_to_rings(rings, x, y) == pytest.approx(truth, abs=1e-6)


def test_polygons_of_any_size_are_measured_by_their_edges() -> None:
    """No vertex limit sends a polygon elsewhere: a square, a donut, a star of 300 vertices and
    a municipality are each measured by the compiled loop over their rings, as GEOS measures
    them, and give the bulk decision's edge table the rows GEOS's rings give. A point on the
    edge is 0.0."""
    plane = LocalPlane.at(52.09, 5.12)
    square = Polygon([(0, 0), (100, 0), (100, 100), (0, 100)])
    many = Polygon(star(0, 0, [500.0 + 40 * (k % 3) for k in range(300)], 0.0))
    donut = Polygon(square.exterior.coords, [[(40, 40), (60, 40), (60, 60), (40, 60)]])
    shapes = [compile_polygon(to_geojson(zone, plane)) for zone in (square, donut, many)]
    shapes.append(municipality_shape("GM0344"))  # Utrecht
    assert int(shapely.get_num_coordinates(shapes[2].metric)) == 301
    for shape in shapes:
        metric = shape.metric
        minx, miny, maxx, maxy = shape.xy_bounds
        # about the shape, wherever it lies: outside, inside, in a hole
        for fx, fy in ((0.5, 0.5), (-0.2, 0.5), (0.5, 1.3), (0.01, 0.02), (0.9, 0.7)):
            px, py = minx + fx * (maxx - minx), miny + fy * (maxy - miny)
            lat, lon = shape.plane.to_latlon(px, py)
            px, py = shape.plane.to_xy(lat, lon)
            edge = metric.boundary.distance(Point(px, py))
            truth = -edge if metric.contains(Point(px, py)) else edge
            assert shape.signed_distance(lat, lon) == pytest.approx(truth, abs=1e-6)
        assert shape.edge_rows().tolist() == [list(row) for row in edge_rows(metric)]
    edges = np.array(edge_rows(square), dtype=np.float64)
    on_edge = signed_distance_to_edges(edges, 0, len(edges), 50.0, 0.0)
    assert (on_edge, math.copysign(1.0, on_edge)) == (0.0, 1.0)  # 0.0, not -0.0
    assert signed_distance_to_edges(edges, 0, len(edges), 50.0, 10.0) == pytest.approx(-10.0)


# How far from a zone's centre the local plane stays within 0.5 % of the great circle, by latitude.
ACCURATE_RANGE_M = [(70.0, 50_000.0), (80.0, 10_000.0), (85.0, 3_000.0)]


@settings(max_examples=500, deadline=None)
@given(
    lat0=st.floats(-85, 85), lon0=longitudes, bearing=st.floats(0, 2 * math.pi),
    fraction=st.floats(0.0001, 1),
)  # fmt: skip
def test_local_plane_distances_agree_with_haversine(
    lat0: float, lon0: float, bearing: float, fraction: float
) -> None:
    reach = next(reach for limit, reach in ACCURATE_RANGE_M if abs(lat0) <= limit)
    distance = fraction * reach
    plane = LocalPlane.at(lat0, lon0)
    lat, lon = plane.to_latlon(distance * math.cos(bearing), distance * math.sin(bearing))
    assume(abs(lat) < 85)
    truth = haversine_m(lat0, lon0, lat, lon)
    x, y = plane.to_xy(lat, lon)
    assert math.hypot(x, y) == pytest.approx(truth, rel=0.005, abs=0.01)
    assert fast_distance_m(lat0, lon0, lat, lon) == pytest.approx(truth, rel=0.005, abs=0.01)


def test_zone_across_the_antimeridian() -> None:
    ring = [[179.99, -16.0], [-179.99, -16.0], [-179.99, -16.02], [179.99, -16.02], [179.99, -16.0]]
    shape = compile_polygon({"type": "Polygon", "coordinates": [ring]})
    assert shape.signed_distance(-16.01, 180.0) < 0  # inside, on the antimeridian
    assert shape.signed_distance(-16.01, -179.995) < 0
    assert shape.signed_distance(-16.01, 179.9) > 9000  # ~10 km west: outside
    assert isinstance(shape, PolygonShape)


@settings(max_examples=100, deadline=None)
@given(
    centres=st.lists(st.tuples(st.floats(-3000, 3000), st.floats(-3000, 3000), st.floats(20, 400)),
                     min_size=1, max_size=30),
    qx=st.floats(-4000, 4000), qy=st.floats(-4000, 4000), radius=st.floats(0, 1500),
)  # fmt: skip
def test_zone_index_matches_brute_force(
    centres: list[tuple[float, float, float]], qx: float, qy: float, radius: float
) -> None:
    plane = LocalPlane.at(52.09, 5.12)
    shapes = []
    for i, (x, y, r) in enumerate(centres):
        lat, lon = plane.to_latlon(x, y)
        shapes.append((i, CircleShape(lat, lon, r)))
    index = ZoneIndex(shapes)
    lat, lon = plane.to_latlon(qx, qy)
    found = {m.key for m in index.query(lat, lon, radius)}
    brute = {i for i, s in shapes if s.signed_distance(lat, lon) <= radius}
    # Float noise right at the radius may differ; nothing else may.
    undecided = {i for i, s in shapes if abs(s.signed_distance(lat, lon) - radius) < 0.01}
    assert found - undecided == brute - undecided


def _square_with(corner: object) -> dict[str, object]:
    ring = [corner, [5.01, 52.0], [5.01, 52.01], [5.0, 52.01], corner]
    return {"type": "Polygon", "coordinates": [ring]}


@pytest.mark.parametrize(
    ("corner", "reason"),
    [
        ([math.nan, 52.0], "coordinates must be finite numbers"),
        ([5.0, math.inf], "coordinates must be finite numbers"),
        ([True, 52.0], "a position is [longitude, latitude]"),
        (["5.0", 52.0], "a position is [longitude, latitude]"),
        ([5.0], "a position is [longitude, latitude]"),
        ([181.0, 52.0], "out of range"),
        ([5.0, -91.0], "out of range"),
    ],
)
def test_a_bad_vertex_is_refused_with_its_place_and_reason(corner: object, reason: str) -> None:
    with pytest.raises(ZoneGeometryError) as refused:
        compile_polygon(_square_with(corner))
    assert refused.value.field == "geometry.coordinates[0][0]"
    assert reason in str(refused.value)


def test_integer_vertices_are_as_good_as_floats() -> None:
    as_ints = compile_polygon(
        {"type": "Polygon", "coordinates": [[[5, 52], [6, 52], [6, 53], [5, 53], [5, 52]]]}
    )
    as_floats = compile_polygon(
        {"type": "Polygon", "coordinates": [[[5.0, 52.0], [6.0, 52.0], [6.0, 53.0], [5.0, 53.0],
                                             [5.0, 52.0]]]}
    )  # fmt: skip
    assert as_ints.metric.equals(as_floats.metric)


def _sum_with_prefetch_source(
    matrix: npt.NDArray[np.float64], rows: npt.NDArray[np.int64]
) -> float:
    total = 0.0
    for k in range(len(rows)):
        prefetch_row(matrix, rows[k] + 1_000_000)  # far past the end: a hint never faults
        prefetch_row(matrix, -rows[k] - 1)
        total += matrix[rows[k], 0]
    return total


# Not `compiled`: code loaded from numba's cache shows no assembly.
_sum_with_prefetch: Any = numba.njit(_sum_with_prefetch_source)


def test_prefetch_row_is_a_real_prefetch_and_changes_no_result() -> None:
    """The bulk decision's early loads are prefetch instructions (or the compiled pass waits on
    every cache miss at 100k orders), and asking for any row, even outside the matrix, reads
    nothing wrong and never faults."""
    matrix = np.arange(30.0).reshape(10, 3)
    rows = np.array([0, 9, 4], dtype=np.int64)
    assert _sum_with_prefetch(matrix, rows) == 0.0 + 27.0 + 12.0
    assembly = "".join(_sum_with_prefetch.inspect_asm().values())
    assert "prefetch" in assembly
