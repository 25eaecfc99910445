"""The restart loop every service runs in: a failure restarts the body, a CancelledError that
comes out of a client (aiokafka cancels its own futures when a broker connection dies) is a
failure too, and only a real cancellation of the service ends it."""

from __future__ import annotations

import asyncio

import pytest

from services.adapters.lifecycle import run_with_restarts


async def test_a_stray_cancelled_error_restarts_the_body_instead_of_ending_the_service() -> None:
    stop = asyncio.Event()
    runs: list[int] = []
    failures: list[BaseException] = []

    async def body() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            lost.cancel()  # what a client does to its in-flight requests when a broker dies
            await lost
        if len(runs) == 2:
            raise ConnectionError("broker away")
        stop.set()

    await asyncio.wait_for(run_with_restarts(stop, "test", body, failures.append), timeout=5)
    assert runs == [0, 1, 2]
    assert [type(f) for f in failures] == [asyncio.CancelledError, ConnectionError]


async def test_cancelling_the_service_still_ends_it() -> None:
    started = asyncio.Event()

    async def body() -> None:
        started.set()
        await asyncio.sleep(3600)

    service = asyncio.create_task(run_with_restarts(asyncio.Event(), "test", body))
    await started.wait()
    service.cancel()
    with pytest.raises(asyncio.CancelledError):
        await service
