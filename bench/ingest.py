"""`breachwatch bench ingest`: orders ingested per second, and latency, with concurrent clients.

The service runs as it does in production: `breachwatch serve ingest` in a process of its own
(uvicorn, one worker, its outbox relay and CJIB consumer running), on a scratch database and
scratch topics of the real PostgreSQL and Kafka. The clients run in this process, each a loop of
`POST /v1/protection-orders` waiting for its answer (closed loop), so the concurrency is the
number of requests in flight.

Baseline in the same run, at the same concurrency: `GET /healthz` of the same server, the
floor of HTTP, uvicorn and the clients on this machine. An ingest is that plus validation
(geometry compiled), one Postgres transaction (order, version, event id, people, zones, outbox)
and its commit. After the last answer the bench also times how long the relay needs to put the
last order on `bw.protection-orders.v1`.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench import plots
from bench.processes import quantile, start_service, stop_service
from deploy.scratch import asyncpg_dsn, scratch_database, scratch_topics
from services.adapters.auth import mint_token
from services.adapters.database import migrate
from services.adapters.settings import Settings

Request = Callable[[httpx.AsyncClient, int], Awaitable[int]]


def home(n: int) -> tuple[float, float]:
    """(lat, lon) of the n-th order's location ban: a grid over the west of the Netherlands."""
    return 51.5 + (n % 1000) * 0.0015, 4.3 + (n // 1000 % 1000) * 0.0025


def order_body(n: int, run: str) -> dict[str, Any]:
    """A realistic order: a circular location ban, a polygon area ban and a contact ban."""
    lat, lon = home(n)
    d = 0.002
    ring = [[lon, lat], [lon + d, lat], [lon + d, lat + d], [lon, lat + d], [lon, lat]]
    order_id = f"BB-{run}-{n:07d}"
    return {
        "event_id": f"{order_id}-v1",
        "event_type": "order.issued",
        "occurred_at": "2026-11-23T08:00:00Z",
        "order": {
            "order_id": order_id,
            "version": 1,
            "valid_from": "2026-11-01T00:00:00Z",
            "subject": {"person_id": f"P-{run}-{n}", "device_id": f"EB-{run}-{n}"},
            "protected_persons": [{"person_id": f"V-{run}-{n}", "device_id": f"VD-{run}-{n}"}],
            "region": ("midden-nederland", "oost-nederland", "noord-holland")[n % 3],
            "probation_officer_id": f"po-{n % 50}",
            "contact_bans": [{"protected_person_id": f"V-{run}-{n}", "min_distance_m": 500}],
            "zones": [
                {"zone_id": "home", "kind": "location_ban", "radius_m": 250,
                 "geometry": {"type": "Point", "coordinates": [lon, lat]}},
                {"zone_id": "work", "kind": "area_ban",
                 "geometry": {"type": "Polygon", "coordinates": [ring]}},
            ],
        },
    }  # fmt: skip


async def _closed_loop(
    http: httpx.AsyncClient, clients: int, total: int, request: Request
) -> tuple[float, list[float]]:
    """`clients` loops sharing `total` requests; wall time and every request's latency."""
    counter = iter(range(total))
    latencies: list[float] = []

    async def loop() -> None:
        for n in counter:
            started = time.perf_counter()
            status = await request(http, n)
            latencies.append(time.perf_counter() - started)
            if status >= 300:
                raise SystemExit(f"request {n} answered {status}")

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(clients)))
    return time.perf_counter() - started, latencies


async def _health(http: httpx.AsyncClient, n: int) -> int:
    return (await http.get("/healthz")).status_code


def _ingest(run: str, offset: int) -> Request:
    async def ingest(http: httpx.AsyncClient, n: int) -> int:
        body = order_body(offset + n, run)
        return (await http.post("/v1/protection-orders", json=body)).status_code

    return ingest


def _summary(wall_s: float, latencies: list[float]) -> dict[str, float]:
    return {
        "per_s": round(len(latencies) / wall_s),
        "p50_ms": round(quantile(latencies, 0.5) * 1000, 2),
        "p95_ms": round(quantile(latencies, 0.95) * 1000, 2),
        "p99_ms": round(quantile(latencies, 0.99) * 1000, 2),
    }


async def _relay_drained_s(settings: Settings, since: float) -> float:
    """Seconds from `since` until the outbox holds nothing unpublished."""
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        unpublished = "SELECT count(*) FROM order_outbox WHERE published_at IS NULL"
        while True:
            pending = await conn.fetchval(unpublished)
            if pending == 0:
                break
            await asyncio.sleep(0.01 if pending < 100 else 0.05)
    finally:
        await conn.close()
    return time.perf_counter() - since


async def measure(base: Settings, levels: list[int], per_level: int) -> dict[str, Any]:
    run = os.urandom(3).hex()
    async with scratch_database(base.database_url) as url:
        settings = base.model_copy(update={"database_url": url})
        await migrate(url)
        async with scratch_topics(settings) as scoped:
            server, base_url = await start_service(scoped, "ingest")
            token = mint_token(scoped, role="cjib", sub="bench")
            rows: list[dict[str, Any]] = []
            try:
                limits = httpx.Limits(max_connections=max(levels), max_keepalive_connections=None)
                async with httpx.AsyncClient(
                    base_url=base_url, limits=limits, timeout=30,
                    headers={"Authorization": f"Bearer {token}"},
                ) as http:  # fmt: skip
                    offset = 0
                    for clients in levels:
                        ingest = _ingest(run, offset)
                        await _closed_loop(http, clients, 200, _health)  # warm the connections
                        floor = _summary(*await _closed_loop(http, clients, per_level, _health))
                        wall_s, latencies = await _closed_loop(http, clients, per_level, ingest)
                        done = time.perf_counter()
                        drained_s = await _relay_drained_s(scoped, done)
                        offset += per_level
                        got = _summary(wall_s, latencies)
                        row = {
                            "clients": clients,
                            "orders": per_level,
                            "orders_per_s": got["per_s"],
                            "p50_ms": got["p50_ms"],
                            "p95_ms": got["p95_ms"],
                            "p99_ms": got["p99_ms"],
                            "healthz_per_s": floor["per_s"],
                            "healthz_p99_ms": floor["p99_ms"],
                            "p99_vs_healthz": round(got["p99_ms"] / floor["p99_ms"], 1),
                            "relay_drained_after_s": round(drained_s, 2),
                        }
                        rows.append(row)
                        print(f"[bench ingest] {row}", file=sys.stderr)
            finally:
                await stop_service(server)
    machine = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    return {"machine": machine, "rows": rows}


def main(
    levels: list[int], per_level: int, as_json: bool, plot_to: Path | None = None
) -> dict[str, Any]:
    results = asyncio.run(measure(Settings(), levels, per_level))
    if plot_to is not None:
        rows = results["rows"]
        plots.lines(
            [r["clients"] for r in rows],
            {"orders p50": [r["p50_ms"] for r in rows], "orders p99": [r["p99_ms"] for r in rows],
             "GET /healthz p99": [r["healthz_p99_ms"] for r in rows]},
            plot_to, title="breachwatch order ingestion: latency by concurrency",
            xlabel="concurrent clients", ylabel="ms",
        )  # fmt: skip
        results["plot"] = str(plot_to)
    if as_json:
        print(json.dumps(results))
    else:
        print(
            "| clients | orders/s | p50 ms | p95 ms | p99 ms | healthz/s | healthz p99 ms "
            "| p99 × healthz | relay drained after s |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for r in results["rows"]:
            print(
                f"| {r['clients']} | {r['orders_per_s']:,} | {r['p50_ms']} | {r['p95_ms']} "
                f"| {r['p99_ms']} | {r['healthz_per_s']:,} | {r['healthz_p99_ms']} "
                f"| {r['p99_vs_healthz']} | {r['relay_drained_after_s']} |"
            )
    return results
