"""The HTTP application: one FastAPI app whose lifespan owns the database engine, the Kafka
producers and the background loops of the services it runs: `ingest` (order routes, the order
outbox relay, the CJIB consumer), `router` (fix_router) and `evaluator` (breach_evaluator and
the alert outbox relay) and `dispatcher` (alert_dispatcher: alerts into Postgres, the alert
API and live feed, escalation, webhooks, victim reports, dossiers, the control-room page).
Every app answers /healthz, /readyz and /metrics for what it runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import text

from schemas.api import OrderEventIn
from services.adapters.database import make_engine, make_sessionmaker
from services.adapters.kafka import make_producer
from services.adapters.lifecycle import Pulse
from services.adapters.metrics import Metrics
from services.adapters.outbox import OutboxRelay
from services.adapters.settings import Settings
from services.adapters.tables import alert_outbox, order_outbox
from services.alert_dispatcher import api as dispatcher_api
from services.alert_dispatcher.dispatcher import AlertDispatcher
from services.alert_dispatcher.dossier import DossierService
from services.alert_dispatcher.service import DispatchService
from services.breach_evaluator.evaluator import ALERT_RELAY_GRACE_S, BreachEvaluator
from services.fix_router.router import FixRouter
from services.http_support import install_error_answers, no_unknown_query, openapi_document
from services.order_ingest import api as order_api
from services.order_ingest.cjib_consumer import CjibConsumer
from services.order_ingest.service import OrderService

SERVICES = ("ingest", "router", "evaluator", "dispatcher")


def create_app(settings: Settings, *, services: Collection[str] = ("ingest",)) -> FastAPI:
    unknown = set(services) - set(SERVICES)
    if unknown:
        raise ValueError(f"unknown services {sorted(unknown)}; one of {', '.join(SERVICES)}")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings)
        sessions = make_sessionmaker(engine)
        app.state.sessions = sessions
        app.state.orders = OrderService(sessions)
        app.state.metrics = []
        app.state.readiness = []
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        producers = []

        async def producer(client_id: str) -> Any:
            made = make_producer(settings, client_id=client_id)
            await made.start()
            producers.append(made)
            return made

        if "ingest" in services:
            ingest_producer = await producer("bw-order-ingest")
            app.state.relay = OutboxRelay(
                sessions, ingest_producer, order_outbox, key_column="key",
                topic=settings.topic("protection-orders.v1"),
            )  # fmt: skip
            app.state.cjib = CjibConsumer(settings, app.state.orders, ingest_producer)
            tasks += [
                asyncio.create_task(app.state.relay.run(stop), name="order-outbox-relay"),
                asyncio.create_task(app.state.cjib.run(stop), name="cjib-consumer"),
            ]
        if "router" in services:
            router = app.state.router = FixRouter(settings, Metrics("bw_fix_router"))
            app.state.metrics.append(router.metrics)
            app.state.readiness.append(("fix_router", router.ready))
            tasks.append(asyncio.create_task(router.run(stop), name="fix-router"))
        if "evaluator" in services:
            evaluator = BreachEvaluator(
                settings, engine, Metrics("bw_breach_evaluator"), settings.rule_config()
            )
            app.state.evaluator = evaluator
            app.state.metrics.append(evaluator.metrics)
            app.state.readiness.append(("breach_evaluator", evaluator.ready))
            # The evaluator publishes its alerts itself; this relay publishes the rows a crash or
            # a broker outage left unmarked, of this process or of one that died.
            app.state.alert_relay = OutboxRelay(
                sessions, await producer("bw-alert-relay"), alert_outbox,
                key_column="order_id", topic=settings.topic("alerts.v1"),
                min_age_s=ALERT_RELAY_GRACE_S, idle_s=1.0,
            )  # fmt: skip
            tasks += [
                asyncio.create_task(evaluator.run(stop), name="breach-evaluator"),
                asyncio.create_task(app.state.alert_relay.run(stop), name="alert-outbox-relay"),
            ]
        app.state.feed_pulse = Pulse()
        if "dispatcher" in services:
            app.state.dispatch = DispatchService(sessions, settings.dispatch)
            app.state.dossiers = DossierService(settings, sessions)
            dispatcher = app.state.dispatcher = AlertDispatcher(
                settings, app.state.dispatch, Metrics("bw_alert_dispatcher"),
                on_commit=app.state.feed_pulse.fire,
            )  # fmt: skip
            app.state.metrics.append(dispatcher.metrics)
            app.state.readiness.append(("alert_dispatcher", dispatcher.ready))
            tasks.append(asyncio.create_task(dispatcher.run(stop), name="alert-dispatcher"))
        try:
            yield
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            for made in producers:
                await made.stop()
            await engine.dispose()

    app = FastAPI(
        title="breachwatch",
        version="0.1.0",
        description="Protection orders, ankle monitors and breach alerts.",
        lifespan=lifespan,
        dependencies=[Depends(no_unknown_query)],
    )
    app.state.settings = settings
    install_error_answers(app)
    if "ingest" in services:
        app.include_router(order_api.router)
    if "dispatcher" in services:
        app.include_router(dispatcher_api.router)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], responses={503: {"description": "not ready"}})
    async def readyz(request: Request) -> Any:
        """The database answers and every consumer loop has joined its inputs."""
        try:
            async with request.app.state.sessions() as session:
                await session.execute(text("SELECT 1"))
        except Exception as exc:  # readiness reports any failure, it does not raise
            return JSONResponse({"status": f"database: {type(exc).__name__}"}, status_code=503)
        waiting = [name for name, ready in request.app.state.readiness if not ready.is_set()]
        if waiting:
            return JSONResponse({"status": f"starting: {', '.join(waiting)}"}, status_code=503)
        return {"status": "ready"}

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    async def metrics(request: Request) -> str:
        """Prometheus text format: counters, gauges and timings of the running services."""
        return "".join(m.render() for m in request.app.state.metrics)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            # The order body is read raw and validated by the one path it shares with the CJIB
            # topic, so FastAPI does not see its model; it is documented by name.
            app.openapi_schema = openapi_document(app, raw_bodies=[OrderEventIn])
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
