"""The HTTP application: one FastAPI app whose lifespan owns the database engine, the Kafka
producer and the background loops (outbox relay, CJIB consumer) of the services it serves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from schemas.api import OrderEventIn
from services.adapters.database import make_engine, make_sessionmaker
from services.adapters.kafka import make_producer
from services.adapters.outbox import OutboxRelay
from services.adapters.settings import Settings
from services.adapters.tables import order_outbox
from services.http_support import install_error_answers, no_unknown_query, openapi_document
from services.order_ingest import api as order_api
from services.order_ingest.cjib_consumer import CjibConsumer
from services.order_ingest.service import OrderService


def create_app(settings: Settings, *, background: bool = True) -> FastAPI:
    """`background=False` serves HTTP only (no relay, no CJIB consumer), for tests that drive
    those loops themselves."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings)
        sessions = make_sessionmaker(engine)
        app.state.sessions = sessions
        app.state.orders = OrderService(sessions)
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        producer = None
        if background:
            producer = make_producer(settings, client_id="bw-order-ingest")
            await producer.start()
            app.state.relay = OutboxRelay(
                sessions, producer, order_outbox, key_column="key",
                topic=settings.topic("protection-orders.v1"),
            )  # fmt: skip
            app.state.cjib = CjibConsumer(settings, app.state.orders, producer)
            tasks = [
                asyncio.create_task(app.state.relay.run(stop), name="order-outbox-relay"),
                asyncio.create_task(app.state.cjib.run(stop), name="cjib-consumer"),
            ]
        try:
            yield
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            if producer is not None:
                await producer.stop()
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
    app.include_router(order_api.router)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], responses={503: {"description": "not ready"}})
    async def readyz(request: Request) -> Any:
        """The database answers and the background loops run."""
        try:
            async with request.app.state.sessions() as session:
                await session.execute(text("SELECT 1"))
        except Exception as exc:  # readiness reports any failure, it does not raise
            return JSONResponse({"status": f"database: {type(exc).__name__}"}, status_code=503)
        return {"status": "ready"}

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            # The order body is read raw and validated by the one path it shares with the CJIB
            # topic, so FastAPI does not see its model; it is documented by name.
            app.openapi_schema = openapi_document(app, raw_bodies=[OrderEventIn])
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
