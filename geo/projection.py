"""A local metric plane around a reference point, accurate anywhere on Earth for zone-sized areas.

Each zone gets its own plane centred on itself (an equirectangular projection at the zone's own
latitude), so the engine is not tied to the Netherlands and no national grid is needed. The
distance error against the great circle stays under 0.5 % within 50 km of the centre up to 70°
latitude, 10 km up to 80° and 3 km up to 85° (property-tested against haversine in
tests/unit/test_geo_properties.py): a metre or two at the distances where a breach is decided.
Zones are at most 200 km wide (geo.shapes), so a zone far north is less exact at its far edge.
Longitudes are unwrapped around the centre, so a zone across the antimeridian works too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from geo.edges import also_compiled

EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG)
_DEG = math.pi / 180.0
MAX_ABS_LATITUDE = 85.0


@also_compiled  # and in services/core/bulk.py
def wrap_longitude_delta(delta: float) -> float:
    """A longitude difference folded into [-180, 180)."""
    return (delta + 180.0) % 360.0 - 180.0


@dataclass(frozen=True, slots=True)
class LocalPlane:
    """x east, y north, metres, around (lat0, lon0)."""

    lat0: float
    lon0: float
    kx: float  # metres per degree of longitude at lat0
    ky: float  # metres per degree of latitude

    @classmethod
    def at(cls, lat0: float, lon0: float) -> LocalPlane:
        if not -MAX_ABS_LATITUDE <= lat0 <= MAX_ABS_LATITUDE:
            raise ValueError(f"latitude {lat0} is too close to a pole for a local plane")
        ky = EARTH_RADIUS_M * _DEG
        return cls(lat0=lat0, lon0=lon0, kx=ky * math.cos(lat0 * _DEG), ky=ky)

    def to_xy(self, lat: float, lon: float) -> tuple[float, float]:
        dlon = lon - self.lon0
        if dlon > 180.0 or dlon < -180.0:
            dlon = wrap_longitude_delta(dlon)
        return dlon * self.kx, (lat - self.lat0) * self.ky

    def to_latlon(self, x: float, y: float) -> tuple[float, float]:
        lon = self.lon0 + x / self.kx
        if lon >= 180.0 or lon < -180.0:
            lon = wrap_longitude_delta(lon)
        return self.lat0 + y / self.ky, lon


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (the reference the local plane is checked against)."""
    p1, p2 = lat1 * _DEG, lat2 * _DEG
    dp = p2 - p1
    dl = wrap_longitude_delta(lon2 - lon1) * _DEG
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


@also_compiled  # and in services/core/bulk.py
def fast_distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Equirectangular distance at the mean latitude: within 0.5 % of haversine in the ranges
    of the module docstring, and a few times cheaper. Used on the hot path (speed checks,
    contact bans)."""
    kx = math.cos((lat1 + lat2) * 0.5 * _DEG)
    dlon = lon2 - lon1
    if dlon > 180.0 or dlon < -180.0:
        dlon = wrap_longitude_delta(dlon)
    dx = dlon * kx
    dy = lat2 - lat1
    return math.sqrt(dx * dx + dy * dy) * EARTH_RADIUS_M * _DEG
