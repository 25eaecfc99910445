"""HTTP contracts (pydantic): what FastAPI validates and documents in the OpenAPI.

The order event is the same contract as `schemas.wire.OrderEvent`; a test keeps the two in
step (same fields, same required set), so the HTTP and Kafka ingestion paths agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from schemas.wire import (
    ONE_LINE,
    DeviceRole,
    OrderEventType,
    RiskLevel,
    Weekday,
    ZoneKind,
)


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("must carry a time zone; use RFC 3339 with Z")
    return value.astimezone(UTC)


UtcTime = Annotated[datetime, AfterValidator(_utc)]
Identifier = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
Name = Annotated[str, Field(min_length=1, max_length=64, pattern=ONE_LINE)]
PersonId = Name


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScheduleWindowIn(Strict):
    days: list[Weekday] = Field(min_length=1, max_length=7)
    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM, Europe/Amsterdam")
    end: str = Field(
        pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM; before start = next day"
    )


class GeometryIn(Strict):
    type: Literal["Point", "Polygon", "MultiPolygon"]
    coordinates: Any


class ZoneIn(Strict):
    zone_id: Name
    kind: ZoneKind
    label: str = Field(default="", max_length=200, pattern=ONE_LINE)
    geometry: GeometryIn | None = None
    radius_m: float | None = Field(default=None, gt=0, le=50_000)
    municipality_code: str | None = Field(default=None, pattern=r"^GM\d{4}$")
    warning_buffer_m: float = Field(default=0.0, ge=0, le=50_000)
    schedule: list[ScheduleWindowIn] | None = None

    @model_validator(mode="after")
    def _one_shape(self) -> ZoneIn:
        if (self.geometry is None) == (self.municipality_code is None):
            raise ValueError("a zone has exactly one of geometry or municipality_code")
        if self.geometry is not None and self.geometry.type == "Point" and self.radius_m is None:
            raise ValueError("a Point zone needs radius_m")
        return self


class ContactBanIn(Strict):
    protected_person_id: PersonId
    min_distance_m: float = Field(gt=0, le=100_000)
    warning_distance_m: float | None = Field(default=None, ge=0, le=200_000)


class SubjectIn(Strict):
    person_id: PersonId
    device_id: Identifier | None = None


class ProtectedPersonIn(Strict):
    person_id: PersonId
    device_id: Identifier | None = None


class CaseOwnerIn(Strict):
    name: str = Field(max_length=200, pattern=ONE_LINE)
    organisation: str = Field(default="", max_length=200, pattern=ONE_LINE)
    phone: str = Field(default="", max_length=50, pattern=ONE_LINE)


class OrderIn(Strict):
    order_id: Identifier
    version: int = Field(ge=1, le=2**31 - 1)
    valid_from: UtcTime
    valid_until: UtcTime | None = None
    subject: SubjectIn
    protected_persons: list[ProtectedPersonIn] = Field(default_factory=list, max_length=20)
    region: Name
    probation_officer_id: Name
    risk_level: RiskLevel = "medium"
    case_owner: CaseOwnerIn | None = None
    contact_bans: list[ContactBanIn] = Field(default_factory=list, max_length=20)
    zones: list[ZoneIn] = Field(default_factory=list, max_length=50)


class OrderEventIn(Strict):
    """The body of `POST /v1/protection-orders`."""

    event_id: Name
    event_type: OrderEventType
    occurred_at: UtcTime
    order: OrderIn


class Problem(BaseModel):
    """An error answer: what went wrong, and where."""

    detail: str
    field: str | None = None


__all__ = [
    "CaseOwnerIn",
    "ContactBanIn",
    "DeviceRole",
    "GeometryIn",
    "OrderEventIn",
    "OrderIn",
    "Problem",
    "ProtectedPersonIn",
    "ScheduleWindowIn",
    "SubjectIn",
    "ZoneIn",
]


class OrderAccepted(BaseModel):
    """The answer to an accepted order event (and, unchanged, to a replay of its event id)."""

    order_id: str
    version: int
    status: Literal["active", "revoked"]
    event_id: str


class OrderView(BaseModel):
    """One order as its readers see it: the current version, whole."""

    order_id: str
    version: int
    status: Literal["active", "revoked"]
    region: str
    probation_officer_id: str
    risk_level: RiskLevel
    valid_from: datetime
    valid_until: datetime | None
    order: OrderIn


class ZoneSummary(BaseModel):
    zone_id: str
    kind: ZoneKind
    label: str


class Forbids(BaseModel):
    contact_bans: list[ContactBanIn]
    zones: list[ZoneSummary]


class LookupHit(BaseModel):
    order_id: str
    region: str
    risk_level: RiskLevel
    matched_by: list[str] = Field(
        description="protected_person, subject, or zone:<zone_id> (within radius_m)"
    )
    case_owner: CaseOwnerIn | None
    probation_officer_id: str
    valid_until: datetime | None
    forbids: Forbids


class LookupResult(BaseModel):
    hits: list[LookupHit]
    emergency: bool = Field(description="searched beyond the own region; flagged for review")
    audit_id: int


# ---------------------------------------------------------------- alerts (alert_dispatcher)


def _storable(value: str) -> str:
    """Free text goes into Postgres and the audit log: no NUL, no lone surrogate."""
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("is not valid Unicode text") from None
    return value


def _http_url(value: str) -> str:
    try:
        parts = urlsplit(_storable(value))
        host = parts.hostname
    except ValueError:
        raise ValueError("is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError("must be an http or https URL with a host")
    return value


Handling = Literal["new", "acknowledged", "resolved"]
Outcome = Literal["police_dispatched", "false_alarm", "technical_fault", "other"]
FreeText = Annotated[str, AfterValidator(_storable)]
Notes = Annotated[FreeText, Field(max_length=4000)]


class PositionView(BaseModel):
    lat: float
    lon: float
    accuracy_m: float
    ts: datetime


class AlertView(BaseModel):
    """One breach episode as the people handling it see it: the latest message on
    `bw.alerts.v1` merged with acknowledgement, assignment, resolution and escalation."""

    alert_id: str
    order_id: str
    rule: str
    zone_id: str | None
    protected_person_id: str | None
    region: str
    probation_officer_id: str
    risk_level: RiskLevel
    audience: Literal["all", "probation"]
    severity: Literal["warning", "breach", "critical"]
    certainty: Literal["certain", "possible"]
    episode_status: Literal["open", "updated", "closed"]
    handling: Handling
    last_seq: int
    episode_started_at: datetime
    first_detected_at: datetime
    last_detected_at: datetime
    received_at: datetime
    closed_at: datetime | None
    late: bool
    position: PositionView | None
    distance_m: float | None
    reason: str
    assigned_to: str | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    resolved_by: str | None
    resolved_at: datetime | None
    outcome: Outcome | None
    notes: str | None
    escalated_at: datetime | None
    case_owner: CaseOwnerIn | None = Field(description="who owns the case, and how to reach them")


class AlertList(BaseModel):
    alerts: list[AlertView]
    feed_id: int = Field(
        description="the live feed's position when the list was read: stream from here "
        "(`Last-Event-ID`) to miss nothing"
    )


class AcknowledgeIn(Strict):
    notes: Notes = ""


class AssignIn(Strict):
    assignee: Name


class ResolveIn(Strict):
    outcome: Outcome
    notes: Notes = ""


class WebhookIn(Strict):
    url: Annotated[str, AfterValidator(_http_url)] = Field(
        min_length=8, max_length=2000, pattern=r"^https?://[^\s]+$"
    )
    secret: str = Field(
        min_length=16, max_length=200, pattern=ONE_LINE,
        description="the HMAC-SHA256 key the receiver checks signatures with",
    )  # fmt: skip
    probation_officer_id: Name | None = None
    organisation: str | None = Field(
        default=None, min_length=1, max_length=200, pattern=ONE_LINE,
        description="receives alerts of orders whose case owner is of this organisation",
    )  # fmt: skip

    @model_validator(mode="after")
    def _one_owner(self) -> WebhookIn:
        if (self.probation_officer_id is None) == (self.organisation is None):
            raise ValueError("a webhook has exactly one of probation_officer_id or organisation")
        return self


class WebhookView(BaseModel):
    id: int
    owner_kind: Literal["officer", "organisation"]
    owner: str
    url: str
    created_by: str
    created_at: datetime
    active: bool


class DeadDelivery(BaseModel):
    id: int
    webhook_id: int
    owner_kind: str
    owner: str
    url: str
    idempotency_key: str
    event: str
    attempts: int
    created_at: datetime
    last_error: str | None


class ReferralView(BaseModel):
    id: int
    order_id: str
    region: str
    probation_officer_id: str
    opened_at: datetime
    status: str
    alert_ids: list[str]


ReportChannel = Literal["message", "call", "sighting", "social_media", "other"]
ReportStatus = Literal["received", "assessed", "forwarded", "closed"]


class EvidenceItem(Strict):
    """Metadata of one piece of evidence the victim holds (a screenshot, a call log); the
    evidence itself stays with the victim or victim support until the prosecutor asks."""

    kind: Literal["screenshot", "photo", "call_log", "message_export", "audio", "other"]
    description: str = Field(default="", max_length=500, pattern=ONE_LINE)
    captured_at: UtcTime | None = None
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    size_bytes: int | None = Field(default=None, ge=0)


class VictimReportIn(Strict):
    order_id: Identifier
    occurred_at: UtcTime
    channel: ReportChannel
    description: FreeText = Field(min_length=1, max_length=4000)
    evidence: list[EvidenceItem] = Field(default_factory=list, max_length=50)


class VictimReportCreated(BaseModel):
    report_id: str
    status: ReportStatus
    status_url: str = Field(description="where the victim follows the report; keep it private")


class ReportEventView(BaseModel):
    at: datetime
    status: ReportStatus
    explanation: str


class VictimReportView(BaseModel):
    report_id: str
    order_id: str
    region: str
    probation_officer_id: str
    occurred_at: datetime
    channel: ReportChannel
    description: str
    evidence: list[EvidenceItem]
    status: ReportStatus
    reported_by: str
    created_at: datetime
    history: list[ReportEventView]


class ReportStatusIn(Strict):
    status: ReportStatus
    explanation: FreeText = Field(min_length=1, max_length=2000,
                             description="what the victim is told about this step")  # fmt: skip


class ReportStatusView(BaseModel):
    """What the victim sees through the status link: the report's path, nothing more."""

    report_id: str
    channel: ReportChannel
    occurred_at: datetime
    status: ReportStatus
    history: list[ReportEventView]


class VictimToken(BaseModel):
    token: str
    order_id: str
    expires_at: datetime
