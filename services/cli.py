"""The one `breachwatch` command."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from services.adapters.settings import Settings

app = typer.Typer(
    help="breachwatch: protection orders, ankle monitors and breach alerts.",
    no_args_is_help=True,
    add_completion=False,
)
infra_app = typer.Typer(help="Real Apache Kafka (KRaft) and PostgreSQL on 127.0.0.1.")
topics_app = typer.Typer(help="Kafka topics.")
db_app = typer.Typer(help="The database schema.")
bench_app = typer.Typer(help="Benchmarks, as ratios against baselines measured in the same run.")
app.add_typer(infra_app, name="infra")
app.add_typer(topics_app, name="topics")
app.add_typer(db_app, name="db")
app.add_typer(bench_app, name="bench")
audit_app = typer.Typer(help="The append-only, hash-chained audit log.")
serve_app = typer.Typer(help="Run a service (HTTP on BW_HTTP_HOST:BW_HTTP_PORT).")
app.add_typer(audit_app, name="audit")
app.add_typer(serve_app, name="serve")


@infra_app.command("up")
def infra_up() -> None:
    """Start Kafka and PostgreSQL (idempotent); print `export BW_...` lines for eval."""
    from deploy import infra

    try:
        exports = infra.up()
    except infra.InfraError as exc:
        typer.echo(f"infra up failed: {exc}", err=True)
        raise typer.Exit(1) from None
    for key, value in exports.items():
        typer.echo(f"export {key}={value}")


@infra_app.command("down")
def infra_down() -> None:
    """Stop Kafka and PostgreSQL; their data stays for the next `up`."""
    from deploy import infra

    try:
        infra.down()
    except infra.InfraError as exc:
        typer.echo(f"infra down failed: {exc}", err=True)
        raise typer.Exit(1) from None


@infra_app.command("status")
def infra_status() -> None:
    """Say whether Kafka and PostgreSQL are running; exit 1 when either is not."""
    from deploy import infra

    states = infra.status()
    for name, running in states.items():
        typer.echo(f"{name}: {'running' if running else 'stopped'}")
    if not all(states.values()):
        raise typer.Exit(1)


@topics_app.command("create")
def topics_create() -> None:
    """Create every topic with its partition count and configuration (idempotent)."""
    from services.adapters.kafka import create_topics, partition_counts

    settings = Settings()
    created = asyncio.run(create_topics(settings))
    counts = asyncio.run(partition_counts(settings))
    for name, count in sorted(counts.items()):
        mark = "created" if name in created else "exists"
        typer.echo(f"{name}: {count} partitions ({mark})")
    orders, signals = settings.topic("protection-orders.v1"), settings.topic("order-signals.v1")
    if counts.get(orders) != counts.get(signals):
        typer.echo(
            f"{orders} and {signals} must have the same partition count "
            "(the evaluator joins them by partition)",
            err=True,
        )
        raise typer.Exit(1)


@db_app.command("migrate")
def db_migrate(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Bring the database schema to a revision (default: the newest)."""
    from services.adapters.database import migrate_sync

    migrate_sync(Settings().database_url, revision)
    typer.echo(f"database at {revision}")


@bench_app.command("core")
def bench_core(
    orders: Annotated[str, typer.Option(help="comma-separated numbers of active orders")] = (
        "1000,10000,100000"
    ),
    fixes: Annotated[int, typer.Option(help="fixes evaluated per size")] = 300_000,
    postgis_fixes: Annotated[
        int, typer.Option(help="fixes sent to PostGIS, one query each")
    ] = 3000,
    as_json: Annotated[
        bool, typer.Option("--json", help="one JSON line instead of a table")
    ] = False,
    batch_size: Annotated[int, typer.Option(help="signals per batch of the batch path")] = 8192,
    plot: Annotated[Path, typer.Option(help="where the throughput plot (PNG) goes")] = Path(
        "bench/results/core-throughput.png"
    ),
) -> None:
    """Fixes/s of the rules engine against a naive shapely baseline and PostGIS, same run."""
    from bench.core import main as run

    run([int(n) for n in orders.split(",")], fixes, postgis_fixes, as_json, batch_size, plot)


@bench_app.command("ingest")
def bench_ingest(
    clients: Annotated[str, typer.Option(help="comma-separated numbers of concurrent clients")] = (
        "1,4,8,32"
    ),
    orders: Annotated[int, typer.Option(help="orders ingested per concurrency level")] = 3000,
    as_json: Annotated[
        bool, typer.Option("--json", help="one JSON line instead of a table")
    ] = False,
    plot: Annotated[Path, typer.Option(help="where the latency plot (PNG) goes")] = Path(
        "bench/results/ingest-latency.png"
    ),
) -> None:
    """Orders/s and latency of `serve ingest` on a scratch database, against GET /healthz of the
    same server at the same concurrency."""
    from bench.ingest import main as run

    run([int(n) for n in clients.split(",")], orders, as_json, plot)


@bench_app.command("pipeline")
def bench_pipeline(
    orders: Annotated[int, typer.Option(help="active orders, one monitored device each")] = 100_000,
    backlog: Annotated[int, typer.Option(help="routed signals waiting before the catch-up")] = (
        1_000_000
    ),
    rates: Annotated[str, typer.Option(help="comma-separated steady fixes/s")] = "1000,5000",
    seconds: Annotated[float, typer.Option(help="seconds of load per steady rate")] = 20.0,
    plot: Annotated[Path, typer.Option(help="where the latency plot (PNG) goes")] = Path(
        "bench/results/pipeline-latency.png"
    ),
    as_json: Annotated[
        bool, typer.Option("--json", help="one JSON line instead of a table")
    ] = False,
) -> None:
    """Catch-up fixes/s of one evaluator from a backlog, its memory, and fix -> alert latency at
    steady rates with CPU use, against a bare consumer and one Kafka hop in the same run."""
    from bench.pipeline import main as run

    run(orders, backlog, [int(n) for n in rates.split(",")], seconds, plot, as_json)


@app.command("token")
def token(
    role: Annotated[str, typer.Option(help="cjib, operator, probation, victim-support or admin")],
    sub: Annotated[str, typer.Option(help="who: a user or officer id")],
    region: Annotated[str | None, typer.Option(help="needed for operator, victim-support")] = None,
    ttl_s: Annotated[int, typer.Option(help="seconds until it expires")] = 8 * 3600,
) -> None:
    """A development JWT signed with BW_JWT_SECRET."""
    from services.adapters.auth import ROLES, mint_token

    if role not in ROLES:
        raise typer.BadParameter(f"one of {', '.join(ROLES)}", param_hint="--role")
    try:
        print(mint_token(Settings(), role=role, sub=sub, region=region, ttl_s=ttl_s))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


@audit_app.command("verify")
def audit_verify() -> None:
    """Walk the hash chain; exit 1 at the first changed or removed row."""
    from services.adapters.audit import verify
    from services.adapters.database import make_engine, make_sessionmaker

    async def go() -> int:
        engine = make_engine(Settings(), pool_size=1)
        try:
            report = await verify(make_sessionmaker(engine))
        finally:
            await engine.dispose()
        if report.intact:
            print(f"audit chain intact: {report.rows} rows")
            return 0
        print(f"audit chain BROKEN at row {report.broken_at}: {report.problem} "
              f"({report.rows} rows before it verified)")  # fmt: skip
        return 1

    raise typer.Exit(asyncio.run(go()))


def _serve(*services: str) -> None:
    import uvicorn

    from services.adapters.lifecycle import tune_garbage_collector
    from services.adapters.logs import configure as configure_logs
    from services.http import create_app

    settings = Settings()
    configure_logs(settings.log_level)
    tune_garbage_collector()
    uvicorn.run(
        create_app(settings, services=services), host=settings.http_host,
        port=settings.http_port, log_level=settings.log_level.lower(), access_log=False,
    )  # fmt: skip


@serve_app.command("ingest")
def serve_ingest() -> None:
    """Order ingestion, order reads and the control-room lookup, with the order outbox relay and
    the CJIB topic consumer."""
    _serve("ingest")


@serve_app.command("router")
def serve_router() -> None:
    """fix_router: positions and device events re-keyed to their orders."""
    _serve("router")


@serve_app.command("evaluator")
def serve_evaluator() -> None:
    """breach_evaluator and its alert outbox relay; run several to share the partitions."""
    _serve("evaluator")


@serve_app.command("dispatcher")
def serve_dispatcher() -> None:
    """alert_dispatcher: the alert API and live feed, the control-room page, escalation,
    webhooks, victim reports and dossiers."""
    _serve("dispatcher")


@serve_app.command("all")
def serve_all() -> None:
    """Every service in one process, for development."""
    _serve("ingest", "router", "evaluator", "dispatcher")


@app.command("simulate")
def simulate(
    devices: Annotated[int, typer.Option(min=1, help="ankle monitors (one order each)")] = 14,
    rate: Annotated[float, typer.Option(min=0.1, help="fixes/s over all monitors")] = 2.0,
    seconds: Annotated[float, typer.Option(min=10, help="how long the script runs")] = 600.0,
    seed: Annotated[int, typer.Option(help="the same seed gives the same run")] = 1,
    lead_s: Annotated[float, typer.Option(min=0, help="orders first, fixes this much later")] = 5.0,
) -> None:
    """Drive ankle monitors (and victims' devices) through real Dutch municipalities onto
    Kafka: orders onto the CJIB topic, then positions and device events in real time, each
    monitor scripted to breach one rule (location ban, area ban, contact ban, presence
    obligation, signal lost, tamper, low battery) at a known time."""
    import time as clock

    from simulator.drive import drive
    from simulator.script import plan

    settings = Settings()
    interval_s = max(0.5, devices / rate)
    start = clock.time() + lead_s
    scripted = plan(devices, seed=seed, start=start, duration_s=seconds, interval_s=interval_s,
                    tag=f"{int(start) % 1_000_000:06d}-")  # fmt: skip
    typer.echo(f"simulating {devices} monitors for {seconds:.0f} s, a fix every "
               f"{interval_s:.1f} s each, onto {settings.kafka_bootstrap}", err=True)  # fmt: skip
    summary = asyncio.run(
        drive(settings, scripted, progress=lambda line: typer.echo(line, err=True))
    )
    for line in summary.lines():
        typer.echo(line)
    rules = Counter(e.rule for e in scripted.expected)
    typer.echo(
        "scripted breaches: " + ", ".join(f"{rule} x{n}" for rule, n in sorted(rules.items()))
    )


@app.command("settings")
def show_settings() -> None:
    """Print the settings in force (secrets masked), as JSON."""
    typer.echo(json.dumps(Settings().model_dump(mode="json"), indent=2))


@app.command("demo")
def demo(
    devices: Annotated[int, typer.Option(min=7, help="ankle monitors per simulator round")] = 14,
    round_s: Annotated[float, typer.Option(min=60, help="seconds per simulator round")] = 120.0,
) -> None:
    """Everything on embedded parts (PostgreSQL and a Kafka-compatible broker from pip wheels,
    no Docker, no system services): every service, the simulator breaching every rule in
    real Dutch municipalities, and the control-room page. Ctrl-C stops it all."""
    from deploy.demo import run
    from services.adapters.logs import configure as configure_logs

    settings = Settings()
    configure_logs("WARNING")
    run(settings, devices=devices, round_s=round_s, say=lambda line: typer.echo(line, err=True))


def main() -> None:  # pragma: no cover - console entry point
    app(sys.argv[1:])
