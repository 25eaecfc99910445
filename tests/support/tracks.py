"""The real GPS tracks of tests/data/tracks, parsed and moved to the Netherlands keeping their
metric shape (and their real defects: gaps, duplicates, bogus or missing timestamps)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from geo.projection import LocalPlane

TRACKS = Path(__file__).resolve().parents[1] / "data" / "tracks"


@dataclass(frozen=True)
class TrackPoint:
    x: float  # metres east of the track's first point
    y: float  # metres north
    dt: float  # seconds since the track's first timestamp (by index when a point has none)


def _time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.strip().replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def load(name: str) -> list[TrackPoint]:
    root = ET.parse(TRACKS / name).getroot()
    raw = []
    for element in root.iter():
        if element.tag.endswith("trkpt"):
            text = next((c.text for c in element if c.tag.endswith("time")), None)
            raw.append((float(element.attrib["lat"]), float(element.attrib["lon"]), _time(text)))
    plane = LocalPlane.at(raw[0][0], raw[0][1])
    first_time = next((t for _, _, t in raw if t is not None), 0.0)
    points, last_dt = [], 0.0
    for i, (lat, lon, stamp) in enumerate(raw):
        x, y = plane.to_xy(lat, lon)
        # Missing or out-of-order timestamps: keep the order of the file, 5 s a point.
        dt = stamp - first_time if stamp is not None else last_dt + 5.0
        dt = dt if dt > last_dt or i == 0 else last_dt + 5.0
        points.append(TrackPoint(x, y, dt))
        last_dt = dt
    return points
