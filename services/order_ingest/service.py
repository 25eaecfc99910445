"""Order ingestion and the reads around it: lifecycle rules, idempotency, audit. No SQL here
(repository.py) and no HTTP (api.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from geo.shapes import compile_shape
from schemas import api, wire
from services.adapters import audit
from services.adapters.auth import Caller
from services.adapters.database import transaction
from services.core import CompiledOrder
from services.order_ingest import repository
from services.order_ingest.validation import content_hash, parse_order_event

Source = str  # "http" | "kafka"


@dataclass(frozen=True, slots=True)
class Answer:
    status: int  # 200 same version again, 201 new version, 409 refused
    body: dict[str, Any]


def _conflict(field: str, detail: str) -> Answer:
    return Answer(409, {"detail": detail, "field": field})


class OrderService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    # ------------------------------------------------------------ ingestion

    async def ingest(self, raw: bytes, *, source: Source) -> Answer:
        """Validate (raises InvalidOrder) and store one order event. Concurrent twins of one
        event id or one order race on primary keys; the loser retries and sees the winner."""
        event, compiled = parse_order_event(raw)
        digest = content_hash(event)
        for attempt in range(5):
            try:
                async with transaction(self._sessions) as session:
                    return await self._ingest(session, event, compiled, digest, source)
            except IntegrityError:
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")

    async def _ingest(
        self,
        session: AsyncSession,
        event: wire.OrderEvent,
        compiled: CompiledOrder,
        digest: str,
        source: Source,
    ) -> Answer:
        seen = await repository.event_answer(session, event.event_id)
        if seen is not None:
            if seen["content_hash"] != digest:
                return _conflict("event_id", "this event id was used before with other content")
            return Answer(seen["status_code"], seen["response"])
        order = event.order
        current = await repository.lock_order(session, order.order_id)
        if current is None:
            if event.event_type != "order.issued":
                return _conflict(
                    "event_type", f"order {order.order_id} is unknown: issue it before changing it"
                )
        else:
            if order.version < current["version"]:
                return _conflict(
                    "order.version", f"stale: version {current['version']} is already in force"
                )
            if order.version == current["version"]:
                known = await repository.version_hash(session, order.order_id, order.version)
                if known != digest:
                    return _conflict(
                        "order.version", f"version {order.version} was received with other content"
                    )
                return Answer(200, self._accepted(event))  # the same version from another event
            if current["status"] == "revoked":
                return _conflict("event_type", f"order {order.order_id} is revoked")
            if event.event_type == "order.issued":
                return _conflict("event_type", f"order {order.order_id} exists: amend or revoke it")
        answer = self._accepted(event)
        await repository.store_version(
            session, event, compiled, content_hash=digest, source=source, answer=answer,
            replaces=current is not None,
        )  # fmt: skip
        return Answer(201, answer)

    @staticmethod
    def _accepted(event: wire.OrderEvent) -> dict[str, Any]:
        return api.OrderAccepted(
            order_id=event.order.order_id,
            version=event.order.version,
            status="revoked" if event.event_type == "order.revoked" else "active",
            event_id=event.event_id,
        ).model_dump(mode="json")

    # ------------------------------------------------------------ reads, each audited

    async def read_order(self, caller: Caller, order_id: str, reason: str) -> api.OrderView | None:
        async with transaction(self._sessions) as session:
            row = await repository.get_order(session, caller, order_id)
            await audit.record(session, caller, action="read_order", object=order_id,
                               reason=reason)  # fmt: skip
        return None if row is None else _view(row)

    async def orders_of_person(
        self, caller: Caller, person_id: str, reason: str
    ) -> list[api.OrderView]:
        async with transaction(self._sessions) as session:
            rows = await repository.orders_of_person(session, caller, person_id)
            await audit.record(session, caller, action="read_orders_of_person",
                               object=f"person:{person_id}", reason=reason)  # fmt: skip
        return [_view(row) for row in rows]

    async def lookup(
        self,
        caller: Caller,
        *,
        person_id: str | None,
        point: tuple[float, float, float] | None,
        emergency: bool,
        reason: str,
        now: datetime | None = None,
    ) -> api.LookupResult:
        """Active orders protecting `person_id` (or naming them as subject), or with a zone
        within radius of the point; own region unless an emergency is declared."""
        now = now or datetime.now(UTC)
        async with transaction(self._sessions) as session:
            hits: list[api.LookupHit] = []
            if person_id is not None:
                rows = await repository.active_orders_of_person(
                    session, caller, person_id, now, all_regions=emergency
                )
                for row in rows:
                    body = row["body"]
                    matched = ["subject"] if body["subject"]["person_id"] == person_id else []
                    if any(p["person_id"] == person_id for p in body["protected_persons"]):
                        matched.append("protected_person")
                    hits.append(_hit(row, matched))
                what = f"person:{person_id}"
            else:
                assert point is not None
                lat, lon, radius_m = point
                rows = await repository.active_orders_near(
                    session, caller, lat, lon, radius_m, now, all_regions=emergency
                )
                for row in rows:
                    matched = [
                        f"zone:{zone['zone_id']}"
                        for zone in row["body"]["zones"]
                        if _zone_distance_m(zone, lat, lon, radius_m) <= radius_m
                    ]
                    if matched:
                        hits.append(_hit(row, matched))
                what = f"location:r={radius_m:.0f}m"  # the point itself stays out of the log
            audit_id = await audit.record(
                session, caller, action="lookup", object=what, reason=reason, emergency=emergency
            )
        hits.sort(key=lambda hit: (_RISK_ORDER[hit.risk_level], hit.order_id))
        return api.LookupResult(hits=hits, emergency=emergency, audit_id=audit_id)


_RISK_ORDER = {"high": 0, "medium": 1, "low": 2}


def _zone_distance_m(zone: dict[str, Any], lat: float, lon: float, within: float) -> float:
    """Metres from the point to the zone (0 inside). Compiled per lookup: lookups are rare and
    a zone's stored body is the version in force, so there is no cache to keep in step."""
    shape = compile_shape(zone.get("geometry"), zone.get("radius_m"), zone.get("municipality_code"))
    return max(0.0, shape.signed_distance(lat, lon, within + 1.0))


def _view(row: Any) -> api.OrderView:
    return api.OrderView(
        order_id=row["order_id"], version=row["version"], status=row["status"],
        region=row["region"], probation_officer_id=row["probation_officer_id"],
        risk_level=row["risk_level"], valid_from=row["valid_from"],
        valid_until=row["valid_until"], order=api.OrderIn.model_validate(row["body"]),
    )  # fmt: skip


def _hit(row: Any, matched: list[str]) -> api.LookupHit:
    body = row["body"]
    return api.LookupHit(
        order_id=row["order_id"], region=row["region"], risk_level=row["risk_level"],
        matched_by=matched, case_owner=body.get("case_owner"),
        probation_officer_id=row["probation_officer_id"], valid_until=row["valid_until"],
        forbids=api.Forbids(
            contact_bans=body["contact_bans"],
            zones=[api.ZoneSummary(zone_id=z["zone_id"], kind=z["kind"], label=z.get("label", ""))
                   for z in body["zones"]],
        ),
    )  # fmt: skip
