"""Tunables of the rules engine with their defaults (DESIGN.md); the settings object reads its
`BW_RULES_*` defaults from here, so there is one source of truth."""

from __future__ import annotations

from msgspec import Struct


class RuleConfig(Struct, frozen=True, kw_only=True):
    dwell_s: float = 60.0
    dwell_fixes: int = 2
    hysteresis_s: float = 120.0
    contact_window_s: float = 60.0
    signal_lost_after_s: float = 300.0
    # Dark for this many times the threshold: the signal_lost alert rises from warning to breach.
    signal_lost_escalate_factor: float = 3.0
    max_future_skew_s: float = 60.0
    # 70 m/s = 252 km/h: faster than a car could take a Dutch road.
    max_speed_mps: float = 70.0
    battery_low_pct: int = 15
    battery_recovered_margin_pct: int = 5
    # A confirmed breach that lasts this long becomes critical.
    critical_after_s: float = 300.0


DEFAULT_RULES = RuleConfig()
