"""`breachwatch demo`: the whole system on embedded parts, with the simulator and the page.

The same code as production, selected by settings: the embedded broker's address and the
embedded database's socket go into the one Settings object, and every service runs in this
process as `serve all` runs them. What differs is said here, for the broker's limits:
a short consumer session (its group joins take seconds with the default), and a short
signal-lost time so that every rule is seen within the first minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import httpx
import uvicorn

from deploy.embedded import embedded_stack
from services.adapters.auth import mint_token
from services.adapters.database import migrate
from services.adapters.kafka import create_topics
from services.adapters.settings import RuleTimings, Settings
from services.http import SERVICES, create_app
from simulator.drive import drive
from simulator.script import plan


def demo_settings(base: Settings, kafka_bootstrap: str, database_url: str) -> Settings:
    return base.model_copy(update={
        "kafka_bootstrap": kafka_bootstrap, "database_url": database_url, "partitions": 4,
        "consumer_session_timeout_ms": 1_500,
        "rules": RuleTimings(signal_lost_after_s=30),
    })  # fmt: skip


def run(base: Settings, *, devices: int, round_s: float, say: Callable[[str], None]) -> None:
    started = time.monotonic()
    say("starting the embedded PostgreSQL and Kafka-compatible broker (Tansu)…")
    with embedded_stack() as stack:
        settings = demo_settings(base, stack.kafka_bootstrap, stack.database_url)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(settings, devices=devices, round_s=round_s, say=say,
                               started=started))  # fmt: skip
        say("stopping: services, broker and database")
    say("stopped; nothing left running")


async def _serve(
    settings: Settings, *, devices: int, round_s: float, say: Callable[[str], None],
    started: float,
) -> None:  # fmt: skip
    await create_topics(settings)
    await migrate(settings.database_url)
    say(f"topics and schema ready ({time.monotonic() - started:.1f} s)")
    app = create_app(settings, services=SERVICES)
    server = uvicorn.Server(uvicorn.Config(
        app, host=settings.http_host, port=settings.http_port, log_level="warning",
        lifespan="on", access_log=False,
    ))  # fmt: skip
    serving = asyncio.create_task(server.serve())
    base_url = f"http://{settings.http_host}:{settings.http_port}"
    async with httpx.AsyncClient(base_url=base_url, timeout=2) as http:
        for _ in range(600):
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get("/readyz")).status_code == 200:
                    break
            if serving.done():
                serving.result()  # the server could not start (port taken?): say why
            await asyncio.sleep(0.1)
    token = mint_token(settings, role="admin", sub="demo-supervisor", ttl_s=24 * 3600)
    say(f"every service is up ({time.monotonic() - started:.1f} s)")
    say(f"control room: {base_url}/#token={token}")
    say("operator of one region: breachwatch token --role operator --sub op-1 "
        "--region midden-nederland")  # fmt: skip
    say("Ctrl-C stops everything")
    simulating = asyncio.create_task(_simulate(settings, devices, round_s, say))
    try:
        await serving
    finally:
        simulating.cancel()
        await asyncio.gather(simulating, return_exceptions=True)


async def _simulate(
    settings: Settings, devices: int, round_s: float, say: Callable[[str], None]
) -> None:
    """Round after round of the scripted breaches, each with fresh orders."""
    round_no = 0
    while True:
        round_no += 1
        start = time.time() + 3
        scripted = plan(devices, seed=round_no, start=start, duration_s=round_s,
                        interval_s=max(1.0, devices / 10), tag=f"R{round_no}-")  # fmt: skip
        say(f"simulator round {round_no}: {devices} monitors, {round_s:.0f} s")
        summary = await drive(settings, scripted, progress=say, report_every_s=30)
        say(f"round {round_no} done: " + "; ".join(summary.lines()))
