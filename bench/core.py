"""`breachwatch bench core`: fixes/s of the rules engine, as ratios against baselines run alongside.

Workload: N active orders of 3 zones each (a circular location ban, a polygon area ban, and a
presence obligation with a night schedule, or a municipality area ban for every tenth order) plus
a contact ban, homes spread over the Netherlands, fixes of random subjects wandering near home
with 5-30 m accuracy, in event-time order. Every run measures in the same process, with the
garbage-collector thresholds `breachwatch serve` sets (services/adapters/lifecycle.py):
- engine: the batch path (`Partition.batch` + `Partition.evaluate`, 8192 signals a batch), with
  accuracy discs, episodes, outlier and lateness checks; building the column batch from the
  (order_id, signal) pairs, each with its own order id string, is inside the timing, as it is
  in the evaluator;
- one by one: `evaluate` per fix, for reference (its alert count must equal the batch path's);
- naive: shapely `contains` of the raw point over every zone of the order, no prepared geometry,
  no bounding boxes (circles as 64-gon polygons), nothing else; timed batch by batch in turn
  with the engine over the same fixes, so that the machine's drift weighs on both alike;
- PostGIS: one `ST_Contains` query per fix against the real PostgreSQL, when PostGIS is there.
"""

from __future__ import annotations

import gc
import json
import math
import os
import random
import resource
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import shapely
from shapely.geometry import Point, shape

from bench import plots
from geo.projection import LocalPlane
from schemas import wire
from services.adapters.lifecycle import tune_garbage_collector
from services.core import Fix, compile_order, evaluate, new_state
from services.core.batch import Partition
from services.core.bulk import compile_now
from services.core.model import CompiledOrder, OrderState

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC).timestamp()  # Monday noon: night schedules off
NL = (51.4, 53.2, 4.2, 6.9)  # lat and lon range of homes
MUNICIPALITIES = ["GM0344", "GM0363", "GM0599", "GM0518", "GM0014", "GM0202"]


@dataclass
class Workload:
    orders: list[CompiledOrder]
    naive_zones: list[list[Any]]
    fixes: list[tuple[int, Fix]]


def _ring(plane: LocalPlane, cx: float, cy: float, rng: random.Random) -> list[list[float]]:
    n = rng.randint(8, 16)
    pts = []
    for i in range(n):
        a = 2 * math.pi * i / n
        r = rng.uniform(150, 400)
        lat, lon = plane.to_latlon(cx + r * math.cos(a), cy + r * math.sin(a))
        pts.append([lon, lat])
    return [*pts, pts[0]]


def build(n_orders: int, n_fixes: int, seed: int = 7) -> Workload:
    rng = random.Random(seed)
    orders, naive, homes = [], [], []
    for i in range(n_orders):
        lat = rng.uniform(NL[0], NL[1])
        lon = rng.uniform(NL[2], NL[3])
        plane = LocalPlane.at(lat, lon)
        homes.append(plane)
        v_lat, v_lon = plane.to_latlon(rng.uniform(-3000, 3000), rng.uniform(-3000, 3000))
        third: dict[str, Any]
        if i % 10 == 0:
            third = {
                "zone_id": "z3",
                "kind": "area_ban",
                "municipality_code": MUNICIPALITIES[i % len(MUNICIPALITIES)],
            }
        else:
            h_lat, h_lon = plane.to_latlon(rng.uniform(-500, 500), rng.uniform(-500, 500))
            third = {
                "zone_id": "z3",
                "kind": "presence_obligation",
                "geometry": {"type": "Point", "coordinates": [h_lon, h_lat]},
                "radius_m": 150,
                "schedule": [
                    {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "22:00", "end": "07:00"}
                ],
            }
        zones: list[dict[str, Any]] = [
            {
                "zone_id": "z1",
                "kind": "location_ban",
                "warning_buffer_m": 300,
                "geometry": {"type": "Point", "coordinates": [v_lon, v_lat]},
                "radius_m": 200,
            },
            {
                "zone_id": "z2",
                "kind": "area_ban",
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [
                        _ring(plane, rng.uniform(-2000, 2000), rng.uniform(-2000, 2000), rng)
                    ],
                },
            },
            third,
        ]
        event = {
            "event_id": f"e{i}",
            "event_type": "order.issued",
            "occurred_at": "2026-11-01T00:00:00Z",
            "order": {
                "order_id": f"BB-{i:07d}",
                "version": 1,
                "valid_from": "2026-11-01T00:00:00Z",
                "subject": {"person_id": f"P-{i}", "device_id": f"EB-{i}"},
                "protected_persons": [{"person_id": f"V-{i}", "device_id": f"VD-{i}"}],
                "region": "midden-nederland",
                "probation_officer_id": f"po-{i % 300}",
                "contact_bans": [
                    {
                        "protected_person_id": f"V-{i}",
                        "min_distance_m": 500,
                        "warning_distance_m": 1000,
                    }
                ],
                "zones": zones,
            },
        }
        compiled = compile_order(wire.decode(wire.OrderEvent, msgspec.json.encode(event)))
        orders.append(compiled)
        naive.append([_naive_zone(z) for z in zones])
    positions = [(0.0, 0.0)] * n_orders
    fixes = []
    t = T0
    for _ in range(n_fixes):
        i = rng.randrange(n_orders)
        x, y = positions[i]
        x, y = x + rng.uniform(-60, 60), y + rng.uniform(-60, 60)
        positions[i] = (x, y)
        t += 0.001
        lat, lon = homes[i].to_latlon(x, y)
        fixes.append(
            (
                i,
                Fix(
                    device_id=f"EB-{i}",
                    role="subject",
                    person_id=f"P-{i}",
                    t=t,
                    lat=lat,
                    lon=lon,
                    accuracy_m=rng.uniform(5, 30),
                ),
            )
        )
    return Workload(orders, naive, fixes)


def _naive_zone(zone: dict[str, Any]) -> Any:
    if "municipality_code" in zone:
        from geo import municipalities

        return shape(municipalities.geometry(zone["municipality_code"]))
    geometry = zone["geometry"]
    if geometry["type"] == "Point":
        lon, lat = geometry["coordinates"]
        plane = LocalPlane.at(lat, lon)
        r = zone["radius_m"]
        ring = [
            plane.to_latlon(r * math.cos(2 * math.pi * k / 64), r * math.sin(2 * math.pi * k / 64))
            for k in range(64)
        ]
        return shapely.Polygon([(lo, la) for la, lo in ring])
    return shape(geometry)


@dataclass
class Timed:
    """The batch path and the naive baseline over the same fixes, timed batch by batch."""

    build_s: float = 0.0  # building the column batches
    decide_s: float = 0.0  # deciding them
    naive_s: float = 0.0
    alerts: int = 0
    quiet: int = 0  # fixes decided in bulk


def run_batch_and_naive(work: Workload, batch_size: int) -> Timed:
    """The batch path (`Partition.batch` then `Partition.evaluate`) and the naive baseline, a
    batch of fixes each in turn, the one that goes first alternating. Measured one after the
    other, each over every fix, the ratio moved by up to 40% between two runs of the same code
    on this shared 2-core machine (its speed drifts over seconds); interleaved, a slow spell
    weighs on both alike. Building is what the evaluator does with every decoded record."""
    partition = Partition()
    for order in work.orders:
        partition.upsert(order, T0)
    # Each pair has its own copy of the order id, as each record the evaluator decodes does;
    # sharing the order's own string object is an input the service never sees.
    items = [(work.orders[i].order_id.encode().decode(), fix) for i, fix in work.fixes]
    timed = Timed()
    gc.collect()
    for k, lo in enumerate(range(0, len(items), batch_size)):
        if k % 2:
            _naive_batch(work, lo, lo + batch_size, timed)
        chunk = items[lo : lo + batch_size]
        start = time.perf_counter()
        batch = partition.batch(chunk)
        built = time.perf_counter()
        outcome = partition.evaluate(batch, chunk[-1][1].t)
        timed.decide_s += time.perf_counter() - built
        timed.build_s += built - start
        timed.alerts += len(outcome.alerts)
        timed.quiet += outcome.quiet
        if not k % 2:
            _naive_batch(work, lo, lo + batch_size, timed)
    return timed


def _naive_batch(work: Workload, lo: int, hi: int, timed: Timed) -> None:
    """The naive baseline over fixes `lo` to `hi`: shapely `contains` of the raw point over
    every zone of the fix's order."""
    hits = 0  # each answer is acted on, as before (the baseline's work stays what it was)
    zones = work.naive_zones
    start = time.perf_counter()
    for i, fix in work.fixes[lo:hi]:
        point = Point(fix.lon, fix.lat)
        for zone in zones[i]:
            if zone.contains(point):
                hits += 1
    timed.naive_s += time.perf_counter() - start


def run_engine(work: Workload) -> tuple[float, int]:
    states: list[OrderState] = [new_state(order, T0) for order in work.orders]
    orders = work.orders
    alerts = 0
    gc.collect()
    start = time.perf_counter()
    for i, fix in work.fixes:
        states[i], out = evaluate(states[i], fix, orders[i], fix.t)
        alerts += len(out)
    return time.perf_counter() - start, alerts


def run_postgis(work: Workload, limit: int) -> tuple[float, int] | str:
    """One query per fix over asyncpg; a reason string when PostGIS is not available."""
    import asyncio

    import asyncpg

    from services.adapters.settings import Settings

    dsn = Settings().database_url.replace("postgresql+asyncpg://", "postgresql://", 1)

    async def go() -> tuple[float, int] | str:
        try:
            conn = await asyncpg.connect(dsn, timeout=5)
        except (OSError, asyncpg.PostgresError) as exc:
            return (
                f"PostgreSQL not reachable ({exc.__class__.__name__}); run `breachwatch infra up`"
            )
        try:
            try:
                await conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
            except asyncpg.PostgresError as exc:
                return f"PostGIS missing ({exc}); apt-get install postgresql-15-postgis-3"
            await conn.execute(
                "DROP TABLE IF EXISTS bench_zones; CREATE TABLE bench_zones ("
                "order_idx int, zone_id text, geom geometry(Geometry, 4326));"
            )
            rows = [
                (i, f"z{k + 1}", zone.wkt)
                for i, zones in enumerate(work.naive_zones)
                for k, zone in enumerate(zones)
            ]
            await conn.executemany(
                "INSERT INTO bench_zones VALUES ($1, $2, ST_GeomFromText($3, 4326))", rows
            )
            await conn.execute(
                "CREATE INDEX ON bench_zones (order_idx); "
                "CREATE INDEX ON bench_zones USING gist (geom); ANALYZE bench_zones"
            )
            query = await conn.prepare(
                "SELECT zone_id FROM bench_zones WHERE order_idx = $1 "
                "AND ST_Contains(geom, ST_SetSRID(ST_MakePoint($2, $3), 4326))"
            )
            hits = 0
            start = time.perf_counter()
            for i, fix in work.fixes[:limit]:
                hits += len(await query.fetch(i, fix.lon, fix.lat))
            elapsed = time.perf_counter() - start
            await conn.execute("DROP TABLE bench_zones")
            return elapsed, hits
        finally:
            await conn.close()

    return asyncio.run(go())


def main(
    sizes: list[int],
    n_fixes: int,
    postgis_fixes: int,
    as_json: bool,
    batch_size: int = 8192,
    plot_to: Path | None = None,
) -> dict[str, Any]:
    compile_now()  # the service compiles the bulk decision at start, not in a batch
    thresholds = gc.get_threshold()
    # As `breachwatch serve` runs the evaluator: with CPython's default thresholds a heap of
    # 100k orders' objects is walked whole every time it grows by a quarter, and the pauses
    # land on whatever allocates then (alerts, mostly). Every measurement of the run has it.
    tune_garbage_collector()
    try:
        return _measure(sizes, n_fixes, postgis_fixes, as_json, batch_size, plot_to)
    finally:
        gc.set_threshold(*thresholds)


def _measure(
    sizes: list[int],
    n_fixes: int,
    postgis_fixes: int,
    as_json: bool,
    batch_size: int,
    plot_to: Path | None,
) -> dict[str, Any]:
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "batch_size": batch_size,
        "rows": [],
    }
    for n in sizes:
        print(f"[bench core] building {n} orders and {n_fixes} fixes ...", file=sys.stderr)
        work = build(n, n_fixes)
        timed = run_batch_and_naive(work, batch_size)
        build_s, decide_s, naive_s = timed.build_s, timed.decide_s, timed.naive_s
        alerts, quiet = timed.alerts, timed.quiet
        engine_s = build_s + decide_s
        one_by_one_s, one_by_one_alerts = run_engine(work)
        if alerts != one_by_one_alerts:
            raise SystemExit(f"batch path gave {alerts} alerts, evaluate {one_by_one_alerts}")
        row: dict[str, Any] = {
            "orders": n,
            "fixes": n_fixes,
            "engine_fixes_per_s": round(n_fixes / engine_s),
            "decide_only_fixes_per_s": round(n_fixes / decide_s),
            "one_by_one_fixes_per_s": round(n_fixes / one_by_one_s),
            "naive_fixes_per_s": round(n_fixes / naive_s),
            "ratio_vs_naive": round(naive_s / engine_s, 2),
            "quiet_share": round(quiet / n_fixes, 3),
            "alerts": alerts,
        }
        pg = run_postgis(work, postgis_fixes)
        if isinstance(pg, str):
            row["postgis"] = f"skipped: {pg}"
        else:
            pg_s, _ = pg
            per_fix = pg_s / postgis_fixes
            row["postgis_fixes_per_s"] = round(1 / per_fix)
            row["ratio_vs_postgis"] = round(per_fix / (engine_s / n_fixes), 1)
        row["max_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        results["rows"].append(row)
        print(f"[bench core] {row}", file=sys.stderr)
        del work
    if plot_to is not None:
        rows = results["rows"]
        plots.grouped_bars(
            [f"{r['orders']:,} orders" for r in rows],
            {
                "engine (batch path)": [r["engine_fixes_per_s"] for r in rows],
                "engine, one by one": [r["one_by_one_fixes_per_s"] for r in rows],
                "naive shapely contains": [r["naive_fixes_per_s"] for r in rows],
                "PostGIS, a query per fix": [r.get("postgis_fixes_per_s") for r in rows],
            },
            plot_to, title="breachwatch rules core: fixes/s on one core (target 300k)",
            ylabel="fixes per second (log scale)", target=300_000,
        )  # fmt: skip
        results["plot"] = str(plot_to)
    if as_json:
        print(json.dumps(results))
    else:
        header = (
            f"{'orders':>8} {'engine fix/s':>13} {'1-by-1 fix/s':>13} {'naive fix/s':>12} "
            f"{'x naive':>8} {'PostGIS fix/s':>14} {'x PostGIS':>10} {'bulk':>6} {'alerts':>7} "
            f"{'RSS MiB':>8}"
        )
        print(header)
        for r in results["rows"]:
            print(
                f"{r['orders']:>8} {r['engine_fixes_per_s']:>13,} "
                f"{r['one_by_one_fixes_per_s']:>13,} {r['naive_fixes_per_s']:>12,} "
                f"{r['ratio_vs_naive']:>8} {r.get('postgis_fixes_per_s', '-'):>14} "
                f"{r.get('ratio_vs_postgis', '-'):>10} {r['quiet_share']:>6} {r['alerts']:>7} "
                f"{r['max_rss_mib']:>8}"
            )
    return results
