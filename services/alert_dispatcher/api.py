"""HTTP routes of the alert dispatcher: alerts (list, read, acknowledge, assign, resolve), the
live feed (Server-Sent Events), webhooks, referrals, victim reports, the breach dossier and the
control-room page. Thin: parse, call the service, answer."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel

from schemas import api
from schemas.wire import ONE_LINE
from services.adapters.auth import (
    Actor,
    Caller,
    Role,
    caller_from_header,
    mint_victim_token,
    require_role,
    victim_from_header,
)
from services.alert_dispatcher.dossier import DossierService, render_html
from services.alert_dispatcher.service import Action, DispatchService
from services.http_support import CallerWith, problem_responses

router = APIRouter()


def _service(request: Request) -> DispatchService:
    service: DispatchService = request.app.state.dispatch
    return service


def _dossiers(request: Request) -> DossierService:
    service: DossierService = request.app.state.dossiers
    return service


Service = Annotated[DispatchService, Depends(_service)]
Dossiers = Annotated[DossierService, Depends(_dossiers)]
ALERT_ROLES: frozenset[Role] = frozenset({"operator", "probation", "admin"})
Watcher = Annotated[Caller, Depends(CallerWith(ALERT_ROLES))]
Admin = Annotated[Caller, Depends(CallerWith(frozenset({"admin"})))]
WebhookOwner = Annotated[Caller, Depends(CallerWith(frozenset({"probation", "admin"})))]
Support = Annotated[Caller, Depends(CallerWith(frozenset({"victim-support", "admin"})))]
ReportReader = Annotated[
    Caller, Depends(CallerWith(frozenset({"victim-support", "probation", "admin"})))
]
ReferralReader = ReportReader
Reason = Annotated[
    str, Query(max_length=500, pattern=ONE_LINE, description="why the data is read (audited)")
]
AlertId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
ReportId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$")]
OrderIdQuery = Annotated[str | None, Query(min_length=1, max_length=64, pattern=ONE_LINE)]


def _reporter(request: Request) -> Actor:
    """A victim-support worker or admin, or a victim with the token of their order."""
    header = request.headers.get("authorization")
    victim = victim_from_header(request.app.state.settings, header)
    if victim is not None:
        return victim
    caller = caller_from_header(request.app.state.settings, header)
    return require_role(caller, frozenset({"victim-support", "admin"}))


Reporter = Annotated[Actor, Depends(_reporter)]

# ---------------------------------------------------------------- alerts


@router.get("/v1/alerts", tags=["alerts"], response_model=api.AlertList,
            responses=problem_responses(401, 403, 422, 503))  # fmt: skip
async def list_alerts(
    caller: Watcher,
    service: Service,
    region: Annotated[str | None, Query(max_length=64, pattern=ONE_LINE)] = None,
    handling: api.Handling | None = None,
    severity: Annotated[str | None, Query(pattern="^(warning|breach|critical)$")] = None,
    rule: Annotated[str | None, Query(max_length=32, pattern="^[a-z_]+$")] = None,
    order_id: OrderIdQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    reason: Reason = "",
) -> Any:
    """Alerts the caller may see, newest first: an operator's region (control-room alerts),
    a probation officer's own cases (their inbox), or everything for an admin."""
    filters = {"region": region, "handling": handling, "severity": severity, "rule": rule,
               "order_id": order_id}  # fmt: skip
    return await service.list_alerts(caller, filters, limit, reason)


@router.get("/v1/alerts/stream", tags=["alerts"], response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "Server-Sent Events: alert, action, escalation, "
                                            "victim_report"},
                       **problem_responses(401, 403, 422, 503)})  # fmt: skip
async def stream_alerts(
    request: Request,
    caller: Watcher,
    service: Service,
    last_event_id: Annotated[
        str | None, Header(alias="Last-Event-ID", max_length=20, pattern=r"^\d+$")
    ] = None,
    region: Annotated[str | None, Query(max_length=64, pattern=ONE_LINE)] = None,
    supervisor: bool = False,
    reason: Reason = "",
) -> StreamingResponse:
    """The live feed of what the caller may see. Every event has an `id`; reconnect with
    `Last-Event-ID` to get exactly what came after it. `supervisor=true`: escalations only."""
    after = await service.feed_start(caller, None if last_event_id is None else int(last_event_id),
                                     reason)  # fmt: skip
    pulse = request.app.state.feed_pulse

    async def events() -> AsyncIterator[str]:
        nonlocal after
        yield "retry: 1000\n\n"
        quiet_s = 0.0
        while not await request.is_disconnected():
            rows = await service.feed(caller, after, region=region, supervisor=supervisor)
            for feed_id, event, payload in rows:
                yield f"id: {feed_id}\nevent: {event}\ndata: {json.dumps(payload)}\n\n"
                after = feed_id
            if rows:
                quiet_s = 0.0
                continue
            # Woken at once by a commit in this process; the timeout covers other processes.
            await pulse.wait(0.5)
            quiet_s += 0.5
            if quiet_s >= 15:
                yield ": keep-alive\n\n"
                quiet_s = 0.0

    return StreamingResponse(
        events(), media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )  # fmt: skip


@router.get("/v1/alerts/{alert_id}", tags=["alerts"], response_model=api.AlertView,
            responses=problem_responses(401, 403, 404, 422, 503))  # fmt: skip
async def read_alert(
    alert_id: AlertId, caller: Watcher, service: Service, reason: Reason = ""
) -> Any:
    """One alert; 404 when it is not the caller's to see."""
    return await service.read_alert(caller, alert_id, reason)


async def _act(
    request: Request, service: DispatchService, caller: Caller, alert_id: str, action: Action,
    body: BaseModel,
) -> api.AlertView:  # fmt: skip
    view = await service.act(caller, alert_id, action, body.model_dump())
    request.app.state.feed_pulse.fire()  # streams in this process show it at once
    return view


@router.post("/v1/alerts/{alert_id}/acknowledge", tags=["alerts"], response_model=api.AlertView,
             responses=problem_responses(401, 403, 404, 409, 422, 503))  # fmt: skip
async def acknowledge(
    alert_id: AlertId, body: api.AcknowledgeIn, caller: Watcher, service: Service, request: Request
) -> Any:
    """Someone has seen it and is on it: stops its escalation."""
    return await _act(request, service, caller, alert_id, "acknowledge", body)


@router.post("/v1/alerts/{alert_id}/assign", tags=["alerts"], response_model=api.AlertView,
             responses=problem_responses(401, 403, 404, 409, 422, 503))  # fmt: skip
async def assign(
    alert_id: AlertId, body: api.AssignIn, caller: Watcher, service: Service, request: Request
) -> Any:
    """Hand the alert to a named person (acknowledging it)."""
    return await _act(request, service, caller, alert_id, "assign", body)


@router.post("/v1/alerts/{alert_id}/resolve", tags=["alerts"], response_model=api.AlertView,
             responses=problem_responses(401, 403, 404, 409, 422, 503))  # fmt: skip
async def resolve(
    alert_id: AlertId, body: api.ResolveIn, caller: Watcher, service: Service, request: Request
) -> Any:
    """Close the handling with an outcome and notes."""
    return await _act(request, service, caller, alert_id, "resolve", body)


@router.get("/v1/alerts/{alert_id}/dossier", tags=["dossier"],
            responses={200: {"content": {"application/json": {}, "text/html": {}},
                             "description": "the dossier; HTML with format=html"},
                       **problem_responses(401, 403, 404, 422, 503)})  # fmt: skip
async def dossier(
    alert_id: AlertId,
    caller: Watcher,
    dossiers: Dossiers,
    format: Annotated[str, Query(pattern="^(json|html)$")] = "json",
    reason: Reason = "",
) -> Response:
    """Everything a prosecutor needs about one breach: the order version in force, the zone,
    every fix of the episode with its accuracy, device health around it, the actions taken,
    and a content hash. Frozen once the episode has closed. Every access is audited."""
    content = await dossiers.dossier(caller, alert_id, reason)
    if format == "html":
        return HTMLResponse(render_html(content))
    return JSONResponse(content)


@router.get("/v1/alerts/{alert_id}/map", tags=["alerts"],
            responses=problem_responses(401, 403, 404, 422, 503))  # fmt: skip
async def alert_map(
    alert_id: AlertId, caller: Watcher, dossiers: Dossiers, reason: Reason = ""
) -> Any:
    """What the control-room map draws for one alert: the order's zones as GeoJSON and the
    alerting device's recent track (audited: zones and positions)."""
    return await dossiers.map_layers(caller, alert_id, reason)


@router.get("/v1/geo/municipalities", tags=["alerts"],
            responses=problem_responses(401, 403, 503))  # fmt: skip
async def municipalities(caller: Watcher, dossiers: Dossiers) -> Response:
    """Simplified municipality outlines (CBS 2023) for the map; no tiles from outside."""
    del caller
    return Response(dossiers.outlines(), media_type="application/json",
                    headers={"Cache-Control": "private, max-age=86400"})  # fmt: skip


# ---------------------------------------------------------------- webhooks


@router.post("/v1/webhooks", tags=["webhooks"], status_code=201, response_model=api.WebhookView,
             responses=problem_responses(401, 403, 409, 422, 503))  # fmt: skip
async def create_webhook(body: api.WebhookIn, caller: WebhookOwner, service: Service) -> Any:
    """Register a receiver of signed notifications (officer: for themselves; admin: for any
    officer or organisation). Each POST carries `Idempotency-Key` = `alert_id:seq`,
    `X-Breachwatch-Timestamp` and `X-Breachwatch-Signature` = `sha256=` HMAC of
    `timestamp.body` under the secret; failures are retried for 24 h, then dead-lettered."""
    return await service.create_webhook(caller, body)


@router.get("/v1/webhooks", tags=["webhooks"], response_model=list[api.WebhookView],
            responses=problem_responses(401, 403, 503))  # fmt: skip
async def list_webhooks(caller: WebhookOwner, service: Service) -> Any:
    return await service.list_webhooks(caller)


@router.get("/v1/webhooks/dead-letters", tags=["webhooks"], response_model=list[api.DeadDelivery],
            responses=problem_responses(401, 403, 422, 503))  # fmt: skip
async def dead_deliveries(
    caller: Admin, service: Service, limit: Annotated[int, Query(ge=1, le=1000)] = 200
) -> Any:
    """Notifications given up on after the retry period: for an admin to follow up."""
    return await service.dead_deliveries(caller, limit)


# ---------------------------------------------------------------- referrals


@router.get("/v1/referrals", tags=["victim support"], response_model=list[api.ReferralView],
            responses=problem_responses(401, 403, 503))  # fmt: skip
async def list_referrals(caller: ReferralReader, service: Service) -> Any:
    """Orders breached repeatedly (default 3 times in 7 days): referred to victim support."""
    return await service.list_referrals(caller)


# ---------------------------------------------------------------- victim reports


@router.post("/v1/victim-reports", tags=["victim support"], status_code=201,
             response_model=api.VictimReportCreated,
             responses=problem_responses(401, 403, 404, 422, 503))  # fmt: skip
async def file_report(
    body: api.VictimReportIn, reporter: Reporter, service: Service, request: Request
) -> Any:
    """A breach no monitor sees (messages, calls, sightings), from victim support or from the
    victim with the token of their order. The answer holds the private status link."""
    report_id, token = await service.file_report(reporter, body)
    request.app.state.feed_pulse.fire()
    return api.VictimReportCreated(
        report_id=report_id, status="received",
        status_url=str(request.url_for("report_status", token=token)),
    )  # fmt: skip


@router.get("/v1/victim-reports", tags=["victim support"],
            response_model=list[api.VictimReportView],
            responses=problem_responses(401, 403, 422, 503))  # fmt: skip
async def list_reports(
    caller: ReportReader,
    service: Service,
    order_id: OrderIdQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    reason: Reason = "",
) -> Any:
    return await service.list_reports(caller, order_id, limit, reason)


@router.get("/v1/victim-reports/status/{token}", tags=["victim support"],
            response_model=api.ReportStatusView, name="report_status",
            responses=problem_responses(404, 422, 503))  # fmt: skip
async def report_status(
    token: Annotated[str, Path(min_length=20, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")],
    service: Service,
) -> Any:
    """The victim's view of their report: its status and each step's explanation. The link
    is the credential; it shows nothing about the subject or the order."""
    return await service.report_status(token)


@router.get("/v1/victim-reports/{report_id}", tags=["victim support"],
            response_model=api.VictimReportView,
            responses=problem_responses(401, 403, 404, 422, 503))  # fmt: skip
async def read_report(report_id: ReportId, caller: ReportReader, service: Service,
                      reason: Reason = "") -> Any:  # fmt: skip
    return await service.read_report(caller, report_id, reason)


@router.post("/v1/victim-reports/{report_id}/status", tags=["victim support"],
             response_model=api.VictimReportView,
             responses=problem_responses(401, 403, 404, 409, 422, 503))  # fmt: skip
async def set_report_status(
    report_id: ReportId, body: api.ReportStatusIn, caller: Support, service: Service,
    request: Request,
) -> Any:  # fmt: skip
    """received → assessed → forwarded (to the prosecutor) / closed, each with the explanation
    the victim reads."""
    view = await service.set_report_status(caller, report_id, body)
    request.app.state.feed_pulse.fire()
    return view


@router.post("/v1/protection-orders/{order_id}/victim-token", tags=["victim support"],
             response_model=api.VictimToken,
             responses=problem_responses(401, 403, 404, 422, 503))  # fmt: skip
async def victim_token(
    order_id: Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")],
    caller: Support,
    service: Service,
    request: Request,
    valid_days: Annotated[int, Query(ge=1, le=366)] = 90,
) -> Any:
    """A token for the victim of this order: it files reports for this order and nothing
    else."""
    await service.order_for_victim_token(caller, order_id)
    token, expires = mint_victim_token(
        request.app.state.settings, order_id=order_id, ttl_s=valid_days * 86400
    )
    return api.VictimToken(token=token, order_id=order_id,
                           expires_at=datetime.fromtimestamp(expires, UTC))  # fmt: skip


# ---------------------------------------------------------------- the control-room page


def _page() -> str:
    return (resources.files("services.alert_dispatcher") / "page" / "control-room.html").read_text()


@router.get("/", include_in_schema=False)
@router.get("/control-room", include_in_schema=False)
async def control_room() -> HTMLResponse:
    """The control-room page: everything inline, nothing fetched from outside."""
    return HTMLResponse(_page(), headers={
        "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; "
        "style-src 'unsafe-inline'; img-src 'self' data:; connect-src 'self'",
        "Cache-Control": "no-store",
    })  # fmt: skip
