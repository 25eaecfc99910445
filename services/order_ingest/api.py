"""HTTP routes of order ingestion, order reads and the control-room lookup. Thin: parse, call
the service, answer; errors are mapped once, in services/http.py."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from schemas import api
from schemas.wire import ONE_LINE
from services.adapters.auth import Caller, Role
from services.http_support import CallerWith, body_within_limit, problem_responses
from services.order_ingest.service import OrderService
from services.order_ingest.validation import InvalidOrder

router = APIRouter(tags=["protection orders"])
ORDER_EVENT_SCHEMA = "#/components/schemas/OrderEventIn"  # put there by services/http.py


def _service(request: Request) -> OrderService:
    service: OrderService = request.app.state.orders
    return service


Service = Annotated[OrderService, Depends(_service)]
READERS: frozenset[Role] = frozenset({"admin", "cjib", "operator", "probation"})
Cjib = Annotated[Caller, Depends(CallerWith(frozenset({"cjib"})))]
Reader = Annotated[Caller, Depends(CallerWith(READERS))]
Operator = Annotated[Caller, Depends(CallerWith(frozenset({"operator", "admin"})))]
Reason = Annotated[
    str, Query(max_length=500, pattern=ONE_LINE, description="why the data is read (audited)")
]
PersonQuery = Annotated[str, Query(min_length=1, max_length=64, pattern=ONE_LINE)]


@router.post(
    "/v1/protection-orders",
    status_code=201,
    response_model=api.OrderAccepted,
    responses={
        200: {"model": api.OrderAccepted, "description": "this version was already received"},
        **problem_responses(401, 403, 409, 413, 422, 503),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/OrderEventIn"}}
            },
        }
    },
)
async def ingest_order(request: Request, caller: Cjib, service: Service) -> JSONResponse:
    """Issue, amend or revoke a protection order (CJIB). Idempotent per `event_id`: a replay
    gets the first answer again."""
    del caller
    raw = await body_within_limit(request)
    answer = await service.ingest(raw, source="http")
    return JSONResponse(answer.body, status_code=answer.status)


@router.get(
    "/v1/protection-orders/{order_id}",
    response_model=api.OrderView,
    responses=problem_responses(401, 403, 404, 422, 503),
)
async def read_order(
    order_id: Annotated[str, Path(min_length=1, max_length=64, pattern=ONE_LINE)],
    caller: Reader,
    service: Service,
    reason: Reason = "",
) -> Any:
    """One order, whole (zones and protected persons: audited). Only orders the caller may see;
    any other is 404, as if it did not exist."""
    view = await service.read_order(caller, order_id, reason)
    if view is None:
        return JSONResponse({"detail": "no such order", "field": "order_id"}, status_code=404)
    return view


@router.get(
    "/v1/protection-orders",
    response_model=list[api.OrderView],
    responses=problem_responses(401, 403, 422, 503),
)
async def orders_of_person(
    person_id: PersonQuery,
    caller: Reader,
    service: Service,
    reason: Reason = "",
) -> Any:
    """The orders naming a person (as protected person or subject) that the caller may see."""
    return await service.orders_of_person(caller, person_id, reason)


@router.get(
    "/v1/lookup",
    response_model=api.LookupResult,
    responses=problem_responses(401, 403, 422, 503),
)
async def lookup(
    caller: Operator,
    service: Service,
    person_id: PersonQuery | None = None,
    lat: Annotated[float | None, Query(ge=-85, le=85)] = None,
    lon: Annotated[float | None, Query(ge=-180, le=180)] = None,
    radius_m: Annotated[float, Query(gt=0, le=50_000)] = 100.0,
    emergency: bool = False,
    reason: Reason = "",
) -> Any:
    """During an acute call: active orders protecting this person (or naming them as subject),
    or with a zone within `radius_m` of this place, riskiest first. Own region only, unless an
    emergency is declared with a reason (audited and flagged for review)."""
    if (person_id is None) == (lat is None and lon is None):
        raise InvalidOrder("person_id", "give either person_id or lat and lon")
    if person_id is None and (lat is None or lon is None):
        raise InvalidOrder("lon" if lon is None else "lat", "lat and lon go together")
    if emergency and not reason.strip():
        raise InvalidOrder("reason", "an emergency lookup needs a reason")
    point = None if lat is None or lon is None else (lat, lon, radius_m)
    return await service.lookup(
        caller, person_id=person_id, point=point, emergency=emergency, reason=reason
    )
