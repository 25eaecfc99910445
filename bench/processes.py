"""What the benchmarks share: running a `breachwatch serve ...` process on scratch settings,
reading its CPU time and resident memory from /proc, and quantiles."""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
from pathlib import Path

import httpx

from deploy.scratch import environment_of, free_port
from services.adapters.settings import Settings

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1]


async def start_service(
    settings: Settings, *services: str, extra_env: dict[str, str] | None = None,
    ready_within_s: float = 120,
) -> tuple[asyncio.subprocess.Process, str]:  # fmt: skip
    """`breachwatch serve <services>` as its own process; returns once /readyz answers 200."""
    port = free_port()
    env = {
        **os.environ,
        **environment_of(settings.model_copy(update={"http_port": port, "log_level": "WARNING"})),
        **(extra_env or {}),
    }
    executable = str(Path(sys.executable).with_name("breachwatch"))
    server = await asyncio.create_subprocess_exec(
        executable, "serve", *services, env=env, stdin=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    name = f"`breachwatch serve {' '.join(services)}`"
    async with httpx.AsyncClient(base_url=url) as http:
        for _ in range(int(ready_within_s * 10)):
            if server.returncode is not None:
                raise SystemExit(f"{name} exited with {server.returncode}")
            try:
                if (await http.get("/readyz")).status_code == 200:
                    return server, url
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    server.terminate()
    raise SystemExit(f"{name} did not become ready in {ready_within_s:.0f} s")


async def stop_service(server: asyncio.subprocess.Process) -> None:
    if server.returncode is None:
        server.terminate()
        await asyncio.wait_for(server.wait(), timeout=30)


async def gauge(url: str, name: str) -> float | None:
    """One gauge from a service's /metrics; None while it does not answer or has not set it."""
    try:
        async with httpx.AsyncClient(base_url=url, timeout=2) as http:
            text = (await http.get("/metrics")).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    return None


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def resident_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")
