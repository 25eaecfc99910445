"""Every SQL statement of order ingestion and lookup. What a caller may see is decided here, in
the WHERE clause (`visible_to`), never by filtering rows after the fact."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import (
    ColumnElement,
    RowMapping,
    Select,
    and_,
    delete,
    false,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from geo.projection import LocalPlane
from schemas import wire
from services.adapters.auth import Caller
from services.adapters.tables import (
    order_events,
    order_outbox,
    order_people,
    order_versions,
    order_zones,
    orders,
)
from services.core import CompiledOrder


def visible_to(caller: Caller, *, all_regions: bool = False) -> ColumnElement[bool]:
    """The orders `caller` may read."""
    if caller.role in ("admin", "cjib"):
        return true()
    if caller.role == "probation":
        return orders.c.probation_officer_id == caller.sub
    if caller.role == "operator":
        return true() if all_regions else orders.c.region == (caller.region or "")
    return false()


def in_force_at(now: datetime) -> ColumnElement[bool]:
    return and_(
        orders.c.status == "active",
        orders.c.valid_from <= now,
        or_(orders.c.valid_until.is_(None), orders.c.valid_until > now),
    )


async def event_answer(session: AsyncSession, event_id: str) -> RowMapping | None:
    conn = await session.connection()  # Core: skips the ORM session layer
    result = await conn.execute(select(order_events).where(order_events.c.event_id == event_id))
    return result.mappings().first()


async def lock_order(session: AsyncSession, order_id: str) -> RowMapping | None:
    conn = await session.connection()  # Core: skips the ORM session layer
    result = await conn.execute(
        select(orders.c.version, orders.c.status).where(orders.c.order_id == order_id)
        .with_for_update()
    )  # fmt: skip
    return result.mappings().first()


async def version_hash(session: AsyncSession, order_id: str, version: int) -> str | None:
    conn = await session.connection()  # Core: skips the ORM session layer
    return await conn.scalar(
        select(order_versions.c.content_hash).where(
            order_versions.c.order_id == order_id, order_versions.c.version == version
        )
    )


async def store_version(
    session: AsyncSession,
    event: wire.OrderEvent,
    compiled: CompiledOrder,
    *,
    content_hash: str,
    source: str,
    answer: dict[str, Any],
    replaces: bool,
) -> None:
    """The new version, the order's current row, its people and zone boxes, the outbox row and
    the answer to its event id: all in the caller's transaction. `replaces`: an earlier version
    is stored, whose people and zones give way to this one's."""
    conn = await session.connection()  # Core: skips the ORM session layer
    order = event.order
    body = msgspec.to_builtins(order)
    current = {
        "version": order.version,
        "status": "revoked" if event.event_type == "order.revoked" else "active",
        "region": order.region,
        "probation_officer_id": order.probation_officer_id,
        "subject_person_id": order.subject.person_id,
        "risk_level": order.risk_level,
        "valid_from": order.valid_from,
        "valid_until": order.valid_until,
        "body": body,
    }
    await conn.execute(
        insert(orders).values(order_id=order.order_id, **current)
        .on_conflict_do_update(index_elements=[orders.c.order_id], set_=current)
    )  # fmt: skip
    await conn.execute(
        order_versions.insert().values(
            order_id=order.order_id, version=order.version, event_id=event.event_id,
            event_type=event.event_type, content_hash=content_hash, body=body, source=source,
        )
    )  # fmt: skip
    if replaces:
        await conn.execute(delete(order_people).where(order_people.c.order_id == order.order_id))
    people = [{"person_id": order.subject.person_id, "role": "subject"}] + [
        {"person_id": p.person_id, "role": "protected"} for p in order.protected_persons
    ]
    await conn.execute(
        order_people.insert(), [{"order_id": order.order_id, **person} for person in people]
    )
    if replaces:
        await conn.execute(delete(order_zones).where(order_zones.c.order_id == order.order_id))
    if compiled.zones:
        await conn.execute(
            order_zones.insert(),
            [
                dict(zip(("min_lon", "min_lat", "max_lon", "max_lat"), z.shape.bounds, strict=True))
                | {"order_id": order.order_id, "zone_id": z.zone_id}
                for z in compiled.zones
            ],
        )
    await conn.execute(order_outbox.insert().values(key=order.order_id, payload=wire.encode(event)))
    await conn.execute(
        order_events.insert().values(
            event_id=event.event_id, content_hash=content_hash, status_code=201, response=answer
        )
    )


async def get_order(session: AsyncSession, caller: Caller, order_id: str) -> RowMapping | None:
    result = await session.execute(
        select(orders).where(orders.c.order_id == order_id, visible_to(caller))
    )
    return result.mappings().first()


async def orders_of_person(
    session: AsyncSession, caller: Caller, person_id: str
) -> Sequence[RowMapping]:
    people = select(order_people.c.order_id).where(order_people.c.person_id == person_id)
    result = await session.execute(
        select(orders).where(orders.c.order_id.in_(people), visible_to(caller))
        .order_by(orders.c.order_id)
    )  # fmt: skip
    return result.mappings().all()


async def active_orders_of_person(
    session: AsyncSession, caller: Caller, person_id: str, now: datetime, *, all_regions: bool
) -> Sequence[RowMapping]:
    people = select(order_people.c.order_id).where(order_people.c.person_id == person_id)
    return await _active_among(session, caller, people, now, all_regions=all_regions)


async def active_orders_near(
    session: AsyncSession,
    caller: Caller,
    lat: float,
    lon: float,
    radius_m: float,
    now: datetime,
    *,
    all_regions: bool,
) -> Sequence[RowMapping]:
    """Orders with a zone whose bounding box comes within `radius_m` of the point; the caller
    decides with the exact shapes. (A box across the antimeridian is not narrowed correctly;
    protection orders are Dutch and their zones at most 200 km wide.)"""
    plane = LocalPlane.at(max(-85.0, min(85.0, lat)), lon)
    dlat = radius_m / plane.ky
    dlon = radius_m / plane.kx if plane.kx > 0 else 180.0
    near = select(order_zones.c.order_id).where(
        order_zones.c.min_lat <= lat + dlat, order_zones.c.max_lat >= lat - dlat,
        order_zones.c.min_lon <= min(180.0, lon + dlon),
        order_zones.c.max_lon >= max(-180.0, lon - dlon),
    )  # fmt: skip
    return await _active_among(session, caller, near, now, all_regions=all_regions)


async def _active_among(
    session: AsyncSession,
    caller: Caller,
    order_ids: Select[tuple[str]],
    now: datetime,
    *,
    all_regions: bool,
) -> Sequence[RowMapping]:
    """The orders among `order_ids` in force at `now` that the caller may see."""
    result = await session.execute(
        select(orders).where(
            orders.c.order_id.in_(order_ids), in_force_at(now),
            visible_to(caller, all_regions=all_regions),
        ).order_by(orders.c.order_id)
    )  # fmt: skip
    return result.mappings().all()
