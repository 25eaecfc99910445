"""The core's inputs, its compiled view of an order, and its state (msgspec, checkpointable).

Times are epoch seconds (floats) in here: event time for fixes and events, wall-clock time only
where DESIGN.md asks for it (signal lost), and always passed in, never read.
"""

from __future__ import annotations

from dataclasses import dataclass

from msgspec import Struct, field

from geo.shapes import Shape
from schemas.wire import DeviceEventType, DeviceRole, RiskLevel, ZoneKind
from services.core.schedule import WeeklySchedule


class Fix(Struct, frozen=True, kw_only=True):
    """One position of one device, as seen by one order."""

    device_id: str
    role: DeviceRole
    person_id: str
    t: float
    lat: float
    lon: float
    accuracy_m: float
    battery_pct: int | None = None


class HealthEvent(Struct, frozen=True, kw_only=True):
    device_id: str
    role: DeviceRole
    person_id: str
    t: float
    type: DeviceEventType
    battery_pct: int | None = None


Signal = Fix | HealthEvent


class SignalRejected(ValueError):
    """A signal that breaks the contract in a way only the core can see (e.g. a future `ts`)."""


# ---------------------------------------------------------------- the compiled order


@dataclass(frozen=True, slots=True)
class CompiledZone:
    zone_id: str
    kind: ZoneKind
    label: str
    shape: Shape
    warning_buffer_m: float
    schedule: WeeklySchedule | None
    fingerprint: str  # changes when anything about the zone changes
    episode_key: str  # the key of its episode in OrderState.episodes


@dataclass(frozen=True, slots=True)
class CompiledContactBan:
    protected_person_id: str
    protected_device_id: str | None
    min_distance_m: float
    warning_distance_m: float
    fingerprint: str
    episode_key: str


@dataclass(frozen=True, slots=True)
class CompiledOrder:
    order_id: str
    version: int
    valid_from: float
    valid_until: float | None
    revoked: bool
    subject_person_id: str
    subject_device_id: str | None
    region: str
    probation_officer_id: str
    risk_level: RiskLevel
    zones: tuple[CompiledZone, ...]
    contact_bans: tuple[CompiledContactBan, ...]
    # protected device id -> the contact bans that watch it
    bans_by_protected_device: dict[str, tuple[CompiledContactBan, ...]]

    def in_force(self, t: float) -> bool:
        return (
            not self.revoked
            and t >= self.valid_from
            and (self.valid_until is None or t < self.valid_until)
        )


# ---------------------------------------------------------------- state


class DeviceTrack(Struct, kw_only=True):
    """What the core remembers of one device of one order."""

    last_t: float | None = None  # event time of the newest fix
    lat: float = 0.0
    lon: float = 0.0
    accuracy_m: float = 0.0
    outlier: bool = False  # the newest fix was an outlier
    # The newest fix that was not an outlier: the reference for the speed check.
    good_t: float | None = None
    good_lat: float = 0.0
    good_lon: float = 0.0
    good_accuracy_m: float = 0.0
    last_rx: float | None = None  # wall-clock time the newest signal of any kind arrived
    last_fix_rx: float | None = None  # wall-clock time the newest fix arrived
    battery_pct: int | None = None


class Episode(Struct, kw_only=True):
    """One breach episode: order x rule x zone (or protected person, or device)."""

    alert_id: str
    rule: str
    subject_key: str  # zone id, protected person id or device id
    started_at: float
    seq: int = -1  # -1: decided on but nothing sent yet (a possible breach in its dwell)
    severity: str | None = None
    certainty: str | None = None
    possible_since: float | None = None
    possible_count: int = 0
    breach_since: float | None = None
    outside_since: float | None = None
    last_t: float = 0.0


class OrderState(Struct, kw_only=True):
    order_id: str
    version: int = 0
    watch_since: float = 0.0  # wall clock when the engine started watching this order
    ended: bool = False  # revoked or expired, and its episodes closed
    zone_fingerprints: dict[str, str] = field(default_factory=dict)
    ban_fingerprints: dict[str, str] = field(default_factory=dict)
    devices: dict[str, DeviceTrack] = field(default_factory=dict)
    episodes: dict[str, Episode] = field(default_factory=dict)
    # Late evidence already reported, per episode key: (first t, last t) of the late window.
    late_windows: dict[str, tuple[float, float]] = field(default_factory=dict)
    # The start of the newest episode per key: starts strictly increase, so ids never repeat.
    last_started: dict[str, float] = field(default_factory=dict)
