"""The Dutch municipalities of 2023 (CBS, Kadaster; CC BY 4.0), shipped with the package.

The outlines are read once and each municipality is compiled once per process, however many
orders ban their subject from it.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import numpy
import shapely

_DATA = resources.files("geo") / "data" / "gemeenten_2023.geojson"


@cache
def _features() -> dict[str, dict[str, Any]]:
    collection = json.loads(_DATA.read_text(encoding="utf-8"))
    return {feature["properties"]["code"]: feature for feature in collection["features"]}


def known_codes() -> frozenset[str]:
    return frozenset(_features())


def geometry(code: str) -> dict[str, Any]:
    """The GeoJSON geometry of a municipality; KeyError for an unknown CBS code."""
    return dict(_features()[code]["geometry"])


def name(code: str) -> str:
    return str(_features()[code]["properties"]["name"])


def all_features() -> list[dict[str, Any]]:
    """Every municipality as a GeoJSON feature (for the control-room map background)."""
    return list(_features().values())


@cache
def simplified_collection(tolerance_deg: float = 0.002) -> dict[str, Any]:
    """Every outline simplified (about 150 m at the default) into one FeatureCollection: enough
    to find one's way on a control-room map, at a fraction of the size."""
    features = []
    for code, feature in sorted(_features().items()):
        shape = shapely.geometry.shape(feature["geometry"]).simplify(
            tolerance_deg, preserve_topology=True
        )
        features.append({
            "type": "Feature",
            "properties": {"code": code, "name": feature["properties"]["name"]},
            # rounded to ~1 m for size; drawn only, never used for a decision
            "geometry": shapely.geometry.mapping(
                shapely.transform(shape, lambda xy: numpy.round(xy, 5))
            ),
        })  # fmt: skip
    return {"type": "FeatureCollection", "features": features}
