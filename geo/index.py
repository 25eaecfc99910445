"""Which zones cover, or lie within R metres of, a point: the control room's lookup by address.

An STRtree over the zones' bounding boxes (degrees) narrows the candidates; each candidate then
answers exactly with its own signed distance in its own metric plane.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

import shapely
from shapely import STRtree

from geo.projection import EARTH_RADIUS_M
from geo.shapes import Shape

K = TypeVar("K", bound=Hashable)
_M_PER_DEG_LAT = EARTH_RADIUS_M * math.pi / 180.0


@dataclass(frozen=True, slots=True)
class Match(Generic[K]):
    key: K
    distance_m: float  # to the zone's edge, negative inside


class ZoneIndex(Generic[K]):
    """An immutable index of shapes under caller-chosen keys (e.g. (order_id, zone_id))."""

    def __init__(self, entries: Iterable[tuple[K, Shape]]) -> None:
        self._keys: list[K] = []
        self._shapes: list[Shape] = []
        boxes = []
        for key, zone in entries:
            self._keys.append(key)
            self._shapes.append(zone)
            boxes.append(shapely.box(*zone.bounds))
        self._tree = STRtree(boxes)

    def __len__(self) -> int:
        return len(self._keys)

    def query(self, lat: float, lon: float, radius_m: float = 0.0) -> list[Match[K]]:
        """Every zone whose edge is within `radius_m` of the point or that contains it, nearest
        first."""
        dlat = radius_m / _M_PER_DEG_LAT
        dlon = dlat / max(math.cos(math.radians(lat)), 1e-6)
        probe = shapely.box(lon - dlon, lat - dlat, lon + dlon, lat + dlat)
        found = []
        for i in self._tree.query(probe):
            distance = self._shapes[int(i)].signed_distance(lat, lon, math.inf)
            if distance <= radius_m:
                found.append(Match(self._keys[int(i)], distance))
        found.sort(key=lambda match: match.distance_m)
        return found
