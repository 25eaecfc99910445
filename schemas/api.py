"""HTTP contracts (pydantic): what FastAPI validates and documents in the OpenAPI.

The order event is the same contract as `schemas.wire.OrderEvent`; a test keeps the two in
step (same fields, same required set), so the HTTP and Kafka ingestion paths agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

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
