"""Real Apache Kafka (KRaft) and PostgreSQL on 127.0.0.1, for development, tests and CI.

`up` is idempotent and cheap the second time: jars are fetched once into a cache, storage is
formatted once, and a service that already answers is left alone. Progress goes to stderr;
stdout carries only `export BW_...=...` lines so that `eval "$(breachwatch infra up)"` works.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

KAFKA_POM = resources.files("deploy") / "kafka" / "pom.xml"
PG_USER = "breachwatch"
PG_PASSWORD = "breachwatch"  # noqa: S105 - loopback-only development cluster
# Given on the command line, so that they hold for a cluster made before they were set. The
# evaluator rewrites the row of every order a batch touched: ~2.4 MB of WAL a second at 5k
# fixes/s (since 0010), and more in a catch-up. With PostgreSQL's defaults (1GB, 5min) that is a
# checkpoint every few minutes, a burst of writes while alerts wait on their commit.
# deploy/OPERATIONS.md says the same for a production database.
PG_SETTINGS = {"max_wal_size": "8GB", "checkpoint_timeout": "15min"}
PG_DATABASE = "breachwatch"


class InfraError(RuntimeError):
    """A step of bringing the infrastructure up or down failed; the message says which."""


def _log(message: str) -> None:
    print(f"[infra] {message}", file=sys.stderr, flush=True)


def _default_state_dir() -> Path:
    # Postgres refuses to run as root, so when we are root the data folder must be somewhere the
    # `postgres` user can reach; root's home is not.
    if os.geteuid() == 0:
        return Path("/var/lib/breachwatch")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "breachwatch"


@dataclass(frozen=True)
class InfraConfig:
    state_dir: Path
    cache_dir: Path
    kafka_port: int
    kafka_controller_port: int
    pg_port: int

    @classmethod
    def from_env(cls) -> InfraConfig:
        state = Path(os.environ.get("BW_INFRA_DIR") or _default_state_dir())
        cache = Path(
            os.environ.get("BW_INFRA_CACHE")
            or os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))
        )
        kafka_port = int(os.environ.get("BW_INFRA_KAFKA_PORT", "19092"))
        return cls(
            state_dir=state,
            cache_dir=cache / "breachwatch",
            kafka_port=kafka_port,
            kafka_controller_port=int(
                os.environ.get("BW_INFRA_KAFKA_CONTROLLER_PORT", str(kafka_port + 1))
            ),
            pg_port=int(os.environ.get("BW_INFRA_PG_PORT", "15432")),
        )

    @property
    def kafka_dir(self) -> Path:
        return self.state_dir / "kafka"

    @property
    def pg_dir(self) -> Path:
        return self.state_dir / "postgres"

    def exports(self) -> dict[str, str]:
        return {
            "BW_KAFKA_BOOTSTRAP": f"127.0.0.1:{self.kafka_port}",
            "BW_DATABASE_URL": (
                f"postgresql+asyncpg://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{self.pg_port}/{PG_DATABASE}"
            ),
        }


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _pid_alive(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    # A zombie still answers kill(0); look at its state so `status` does not lie.
    with contextlib.suppress(FileNotFoundError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return None
    return pid


def _run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise InfraError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return result  # type: ignore[no-any-return]


# ---------------------------------------------------------------- Kafka


def _kafka_version() -> str:
    text = KAFKA_POM.read_text()
    return text.split("<kafka.version>", 1)[1].split("<", 1)[0]


def kafka_libs(cfg: InfraConfig) -> Path:
    """The folder of broker jars, fetched with Maven on first use."""
    libs = cfg.cache_dir / f"kafka-{_kafka_version()}" / "libs"
    marker = libs / ".complete"
    if marker.exists():
        return libs
    if shutil.which("mvn") is None or shutil.which("java") is None:
        raise InfraError(
            "java and mvn are needed to fetch Kafka (apt-get install maven openjdk-17-jre)"
        )
    _log(f"fetching Apache Kafka {_kafka_version()} jars from Maven Central into {libs}")
    libs.mkdir(parents=True, exist_ok=True)
    with resources.as_file(KAFKA_POM) as pom:
        _run(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={libs}",
                "-DincludeScope=runtime",
            ]
        )
    marker.write_text("ok\n")
    return libs


def _kafka_properties(cfg: InfraConfig) -> str:
    data = cfg.kafka_dir / "data"
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"listeners=PLAINTEXT://127.0.0.1:{cfg.kafka_port},"
            f"CONTROLLER://127.0.0.1:{cfg.kafka_controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{cfg.kafka_port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"controller.quorum.bootstrap.servers=127.0.0.1:{cfg.kafka_controller_port}",
            f"log.dirs={data}",
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            "num.partitions=1",
            # One machine, one broker: keep the log flusher and cleaner from taking the CPU
            # the services need.
            "log.cleaner.threads=1",
            "num.io.threads=4",
            "num.network.threads=2",
            "",
        ]
    )


_LOG4J = """log4j.rootLogger=WARN, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File={log}
log4j.appender.file.MaxFileSize=20MB
log4j.appender.file.MaxBackupIndex=2
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
"""


# The heap and collector settings of Kafka's own start scripts (kafka-server-start.sh and
# kafka-run-class.sh), as the compose file's image runs them. The heap was 256 MiB to start
# and G1 kept it at ~310 MiB: at 5k fixes/s the broker paused for 10-22 ms every ~2.5 s, plus an
# 8-12 ms remark every ~5 s, as its old generation (~165 MiB) kept crossing the threshold of a
# concurrent cycle; every Kafka hop of a fix waits out a pause. Over one `bench pipeline` run:
# 108 pauses, 822 ms in all, before; 34 pauses, 421 ms, with these. Each young pause still
# takes 5-21 ms on two busy cores (gc.log, beside server.log, says when).
_KAFKA_JVM = (
    "-Xms1g",
    "-Xmx1g",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
)


def kafka_up(cfg: InfraConfig) -> None:
    pid_file = cfg.kafka_dir / "kafka.pid"
    if _pid_alive(pid_file) and _port_open(cfg.kafka_port):
        _log(f"kafka already running on 127.0.0.1:{cfg.kafka_port}")
        return
    if _port_open(cfg.kafka_port):
        raise InfraError(f"port {cfg.kafka_port} is taken by something that is not our Kafka")
    libs = kafka_libs(cfg)
    cfg.kafka_dir.mkdir(parents=True, exist_ok=True)
    props = cfg.kafka_dir / "server.properties"
    props.write_text(_kafka_properties(cfg))
    log4j = cfg.kafka_dir / "log4j.properties"
    log4j.write_text(_LOG4J.format(log=cfg.kafka_dir / "server.log"))
    classpath = f"{libs}/*"
    java_opts = [f"-Dlog4j.configuration=file:{log4j}"]
    if not (cfg.kafka_dir / "data" / "meta.properties").exists():
        _log("formatting Kafka storage (KRaft, standalone controller)")
        cluster_id = _run(
            ["java", "-cp", classpath, *java_opts, "kafka.tools.StorageTool", "random-uuid"]
        ).stdout.split()[-1]
        _run(
            [
                "java",
                "-cp",
                classpath,
                *java_opts,
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                "-t",
                cluster_id,
                "-c",
                str(props),
            ]
        )
    _log(f"starting Kafka on 127.0.0.1:{cfg.kafka_port}")
    with open(cfg.kafka_dir / "stdout.log", "ab") as out:
        proc = subprocess.Popen(
            [
                "java",
                *_KAFKA_JVM,
                f"-Xlog:gc:file={cfg.kafka_dir / 'gc.log'}:time,uptime:filecount=2,filesize=10m",
                "-Djava.awt.headless=true",
                *java_opts,
                "-cp",
                classpath,
                "kafka.Kafka",
                str(props),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    pid_file.write_text(f"{proc.pid}\n")
    _wait_for_kafka(cfg, proc)


def _wait_for_kafka(cfg: InfraConfig, proc: subprocess.Popen[bytes], timeout_s: float = 90) -> None:
    """Wait for a real metadata answer, not merely an open port."""
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient

    async def probe() -> None:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=f"127.0.0.1:{cfg.kafka_port}", request_timeout_ms=3000
        )
        await admin.start()
        try:
            await admin.describe_cluster()
        finally:
            await admin.close()

    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise InfraError(
                f"Kafka exited with {proc.returncode}; see {cfg.kafka_dir / 'server.log'}"
            )
        if _port_open(cfg.kafka_port):
            try:
                asyncio.run(probe())
                _log("kafka answers metadata requests")
                return
            except Exception as exc:
                last_error = exc
        time.sleep(0.3)
    raise InfraError(f"Kafka did not answer within {timeout_s}s: {last_error!r}")


def _stop_pid(
    pid_file: Path, name: str, timeout_s: float = 30, how: signal.Signals = signal.SIGTERM
) -> None:
    pid = _pid_alive(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return
    _log(f"stopping {name} (pid {pid}) with {how.name}")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, how)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _pid_alive(pid_file):
        time.sleep(0.2)
    if _pid_alive(pid_file):
        _log(f"{name} did not stop in {timeout_s}s; killing it")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        while _pid_alive(pid_file):
            time.sleep(0.1)
    pid_file.unlink(missing_ok=True)


def kafka_down(cfg: InfraConfig, *, hard: bool = False) -> None:
    """Stop the broker: a controlled shutdown, or (`hard`) SIGKILL, as a crash would."""
    how = signal.SIGKILL if hard else signal.SIGTERM
    _stop_pid(cfg.kafka_dir / "kafka.pid", "kafka", how=how)


# ---------------------------------------------------------------- PostgreSQL


def postgres_bindir() -> Path:
    """The newest Debian PostgreSQL server binaries, installing them if absent."""

    def find() -> Path | None:
        versions = sorted(
            (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "postgres").exists()),
            key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        )
        return versions[-1] if versions else None

    found = find()
    if found is None:
        if os.geteuid() != 0:
            raise InfraError("PostgreSQL is not installed: apt-get install -y postgresql")
        _log("installing PostgreSQL from Debian's packages")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        _run(["apt-get", "update", "-q"], env=env)
        _run(["apt-get", "install", "-y", "-q", "postgresql"], env=env)
        found = find()
        if found is None:
            raise InfraError("apt-get installed postgresql but no server binary was found")
    return found


def _as_pg_user(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def _pg_owner_ids() -> tuple[int, int]:
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        return entry.pw_uid, entry.pw_gid
    return os.getuid(), os.getgid()


def postgres_up(cfg: InfraConfig) -> None:
    bindir = postgres_bindir()
    data = cfg.pg_dir / "data"
    sock = cfg.pg_dir / "sock"
    if (data / "postmaster.pid").exists() and _port_open(cfg.pg_port):
        _log(f"postgres already running on 127.0.0.1:{cfg.pg_port}")
        return
    if _port_open(cfg.pg_port):
        raise InfraError(f"port {cfg.pg_port} is taken by something that is not our PostgreSQL")
    uid, gid = _pg_owner_ids()
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    cfg.state_dir.chmod(0o755)
    cfg.pg_dir.mkdir(parents=True, exist_ok=True)
    sock.mkdir(exist_ok=True)
    for path in (cfg.pg_dir, sock):
        os.chown(path, uid, gid)
    if not (data / "PG_VERSION").exists():
        _log("initdb (PostgreSQL)")
        pwfile = cfg.pg_dir / "pwfile"
        pwfile.write_text(PG_PASSWORD + "\n")
        os.chown(pwfile, uid, gid)
        pwfile.chmod(0o600)
        _run(
            _as_pg_user(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    PG_USER,
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ]
            )
        )
        pwfile.unlink()
        with open(data / "postgresql.conf", "a") as conf:
            # A test and development cluster: durability of a single crash is what the tests
            # exercise (`pg_ctl stop -m immediate`), so fsync stays on.
            conf.write(
                "\nmax_connections = 200\nshared_buffers = 256MB\n"
                "log_min_messages = warning\nlogging_collector = off\n"
            )
    _log(f"starting PostgreSQL on 127.0.0.1:{cfg.pg_port}")
    _run(
        _as_pg_user(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-w",
                "-t",
                "60",
                "-l",
                str(cfg.pg_dir / "server.log"),
                "-o",
                f"-h 127.0.0.1 -p {cfg.pg_port} -k {sock} "
                + " ".join(f"-c {name}={value}" for name, value in PG_SETTINGS.items()),
                "start",
            ]
        )
    )
    _ensure_database(cfg)


def _ensure_database(cfg: InfraConfig) -> None:
    import asyncio

    import asyncpg

    async def ensure() -> None:
        conn = await asyncpg.connect(
            host="127.0.0.1",
            port=cfg.pg_port,
            user=PG_USER,
            password=PG_PASSWORD,
            database="postgres",
        )
        try:
            exists = await conn.fetchval(
                "SELECT 1 FROM pg_database WHERE datname = $1", PG_DATABASE
            )
            if not exists:
                await conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')
        finally:
            await conn.close()

    asyncio.run(ensure())


def postgres_down(cfg: InfraConfig, mode: str = "fast") -> None:
    data = cfg.pg_dir / "data"
    if not (data / "postmaster.pid").exists():
        return
    _log(f"stopping PostgreSQL ({mode})")
    bindir = postgres_bindir()
    _run(_as_pg_user([str(bindir / "pg_ctl"), "-D", str(data), "-w", "-m", mode, "stop"]))


# ---------------------------------------------------------------- commands


def up() -> dict[str, str]:
    cfg = InfraConfig.from_env()
    postgres_up(cfg)
    kafka_up(cfg)
    return cfg.exports()


def down() -> None:
    cfg = InfraConfig.from_env()
    kafka_down(cfg)
    postgres_down(cfg)


def status() -> dict[str, bool]:
    cfg = InfraConfig.from_env()
    return {
        "kafka": bool(_pid_alive(cfg.kafka_dir / "kafka.pid")) and _port_open(cfg.kafka_port),
        "postgres": (cfg.pg_dir / "data" / "postmaster.pid").exists() and _port_open(cfg.pg_port),
    }


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "status"
    try:
        if command == "up":
            for key, value in up().items():
                print(f"export {key}={value}")
        elif command == "down":
            down()
        elif command == "status":
            for name, running in status().items():
                print(f"{name}: {'running' if running else 'stopped'}")
        else:
            print("usage: python -m deploy.infra up|down|status", file=sys.stderr)
            return 2
    except InfraError as exc:
        _log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
