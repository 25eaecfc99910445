"""The alert dispatcher's decisions, pure: how a message changes an episode's record, who may
move an alert or a victim report to which state, when a breach escalates, when repeated
breaches open a victim-support referral, and how webhook retries are spaced and signed.

No I/O and no clock: times are arguments, so every decision is a unit test away.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import msgspec

from schemas import wire

SEVERITY_RANK = {"warning": 0, "breach": 1, "critical": 2}
Handling = Literal["new", "acknowledged", "resolved"]
Outcome = Literal["police_dispatched", "false_alarm", "technical_fault", "other"]
ReportStatus = Literal["received", "assessed", "forwarded", "closed"]
Channel = Literal["message", "call", "sighting", "social_media", "other"]

# Rules whose breach is the subject's conduct; device health (signal lost, tamper, battery) is
# looked into by probation and does not count towards a victim-support referral.
CONDUCT_RULES = frozenset({"location_ban", "area_ban", "contact_ban", "presence_obligation"})


# What people (and escalation) add to an episode; nothing yet on its first message.
HANDLED_BY = (
    "assigned_to", "acknowledged_by", "acknowledged_at", "resolved_by", "resolved_at", "outcome",
    "notes", "escalated_at",
)  # fmt: skip


class Refused(Exception):
    """An action that does not fit the record's state (HTTP 409), with the field at fault."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field
        self.detail = detail


def higher(a: str, b: str) -> str:
    return a if SEVERITY_RANK[a] >= SEVERITY_RANK[b] else b


def merged(current: dict[str, Any] | None, message: wire.Alert, now: datetime) -> dict[str, Any]:
    """The episode's record after `message`. Messages of one alert arrive in `seq` order on one
    partition, but a replay repeats old ones: a `seq` at or below the stored one changes
    nothing. Severity never falls within an episode, here as in the core, and an escalation's
    raise is kept."""
    if current is not None and message.seq <= current["last_seq"]:
        return current
    severity = (
        message.severity if current is None else higher(current["severity"], message.severity)
    )
    is_breach = SEVERITY_RANK[severity] >= SEVERITY_RANK["breach"]
    record: dict[str, Any] = {} if current is None else dict(current)
    record.update(
        alert_id=message.alert_id,
        order_id=message.order_id,
        rule=message.rule,
        zone_id=message.zone_id,
        protected_person_id=message.protected_person_id,
        region=message.region,
        probation_officer_id=message.probation_officer_id,
        risk_level=message.risk_level,
        audience=message.audience,
        severity=severity,
        certainty=message.certainty,
        episode_status=message.status,
        last_seq=message.seq,
        episode_started_at=message.episode_started_at,
        last_detected_at=message.detected_at,
        latest=msgspec.to_builtins(message),
        closed_at=message.detected_at if message.status == "closed" else None,
    )
    if current is None:
        record.update(
            first_detected_at=message.detected_at, received_at=now, handling="new",
            breach_since=now if is_breach else None, **dict.fromkeys(HANDLED_BY),
        )  # fmt: skip
    elif is_breach and current["breach_since"] is None:
        record["breach_since"] = now
    return record


# ---------------------------------------------------------------- handling by people


def after_action(
    handling: str, action: Literal["acknowledge", "assign", "resolve"]
) -> Handling | None:
    """The handling state after `action`, or None when it changes nothing (acknowledging an
    acknowledged alert). Raises Refused for an action on a resolved alert."""
    if handling == "resolved":
        raise Refused("alert_id", "the alert is resolved; nothing more can be done to it")
    if action == "acknowledge":
        return None if handling == "acknowledged" else "acknowledged"
    if action == "assign":
        return "acknowledged"  # taking an alert on is acknowledging it
    return "resolved"


REPORT_NEXT: dict[str, frozenset[str]] = {
    "received": frozenset({"assessed", "closed"}),
    "assessed": frozenset({"forwarded", "closed"}),
    "forwarded": frozenset({"closed"}),
    "closed": frozenset(),
}


def report_transition(current: str, wanted: str) -> str:
    if wanted not in REPORT_NEXT[current]:
        allowed = ", ".join(sorted(REPORT_NEXT[current])) or "nothing (it is closed)"
        raise Refused("status", f"a {current} report can move to {allowed}, not {wanted}")
    return wanted


# ---------------------------------------------------------------- escalation and referral


@dataclass(frozen=True, slots=True)
class EscalationPolicy:
    after_s: float = 60.0
    after_high_risk_s: float = 30.0

    def deadline(self, breach_since: datetime, risk_level: str) -> datetime:
        wait = self.after_high_risk_s if risk_level == "high" else self.after_s
        return breach_since + timedelta(seconds=wait)

    def due(self, alert: dict[str, Any], now: datetime) -> bool:
        return (
            alert["handling"] == "new"
            and alert["escalated_at"] is None
            and alert["breach_since"] is not None
            and now >= self.deadline(alert["breach_since"], alert["risk_level"])
        )


def escalated_severity(severity: str) -> str:
    return "critical" if severity == "breach" else severity


@dataclass(frozen=True, slots=True)
class ReferralPolicy:
    breaches: int = 3
    window: timedelta = timedelta(days=7)

    def counts(self, rule: str, severity: str) -> bool:
        return rule in CONDUCT_RULES and SEVERITY_RANK[severity] >= SEVERITY_RANK["breach"]

    def opens(self, breach_times: list[datetime], now: datetime) -> bool:
        return sum(1 for at in breach_times if now - at <= self.window) >= self.breaches


# ---------------------------------------------------------------- webhooks


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_s: float = 2.0
    cap_s: float = 600.0
    give_up_after_s: float = 24 * 3600.0

    def next_delay_s(self, attempts: int, unit_random: float) -> float:
        """Exponential backoff with full jitter: uniform in [base/2, min(cap, base·2^n)], so
        a receiver that comes back is not hit by every sender at once."""
        ceiling = min(self.cap_s, self.base_s * float(2 ** min(attempts, 30)))
        floor = min(self.base_s / 2, ceiling)
        return floor + (ceiling - floor) * unit_random

    def gives_up(self, created_at: datetime, now: datetime) -> bool:
        return (now - created_at).total_seconds() >= self.give_up_after_s


SIGNATURE_HEADER = "X-Breachwatch-Signature"
TIMESTAMP_HEADER = "X-Breachwatch-Timestamp"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """HMAC-SHA256 over `timestamp.body`, hex, prefixed `sha256=`. The timestamp is signed so a
    receiver can refuse an old request replayed by someone who captured it."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def signature_valid(secret: str, timestamp: int, body: bytes, header: str) -> bool:
    return hmac.compare_digest(signature(secret, timestamp, body), header)
