"""How the long-running loops of every service live: the one wall clock, sleeping until
stopped, restarting after failures (broker or database away) with backoff, and the garbage
collector of a process holding many orders."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


def really_cancelled() -> bool:
    """Whether the running task itself is being cancelled. aiokafka cancels its own futures
    when a broker connection dies, and the CancelledError can surface in the awaiting service
    although nobody cancelled it; taken for a cancellation, it ended the service silently
    (fix_router and the evaluator both stopped for good after a broker crash)."""
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0


def wall_clock() -> float:
    """Epoch seconds: the `now` handed to the core (which never reads a clock itself)."""
    return time.time()


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def run_with_restarts(
    stop: asyncio.Event,
    name: str,
    body: Callable[[], Awaitable[None]],
    on_failure: Callable[[BaseException], None] | None = None,
) -> None:
    """Run `body` until it returns or `stop` is set; after a failure, log it without any
    payload, back off (0.2 s doubling to 5 s) and run it again."""
    backoff = 0.2
    while not stop.is_set():
        try:
            await body()
            return
        except (Exception, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError) and really_cancelled():
                raise
            log.warning("%s: %s; restarting in %.1fs", name, type(exc).__name__, backoff)
            if on_failure is not None:
                on_failure(exc)
            await sleep_or_stop(stop, backoff)
            backoff = min(backoff * 2, 5.0)


class Pulse:
    """Wakes every waiter at once when something happened (a commit that others may want to
    read), without anyone having to clear a flag; waiters also wake on their own timeout."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout_s)


def tune_garbage_collector() -> None:
    """A service holding 100k orders holds millions of long-lived objects, and CPython's
    default thresholds run a full collection over all of them every time the heap grows by a
    quarter: 22 full collections, 13 s of a 50 s catch-up, in `breachwatch bench pipeline`. The
    state is freed by reference counting; cycles are rare, so collecting them far less often
    costs little memory and takes the pauses off the hot path."""
    gc.set_threshold(50_000, 50, 50)
