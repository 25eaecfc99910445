"""A restarted evaluator loads every order of its partitions from Postgres before it evaluates
them. aiokafka sends no heartbeat while a rebalance listener runs, so a load done there that
outlasts the session timeout put the evaluator out of its group, which rebalanced, and it loaded
again: a restart holding 100k orders lost and reloaded its partitions for two minutes."""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer

from schemas import wire
from services.adapters.database import make_engine
from services.adapters.metrics import Metrics
from services.adapters.settings import Settings
from services.breach_evaluator.evaluator import BreachEvaluator, HeldPartition
from services.core import DEFAULT_RULES
from tests.support.kafka import wait_for
from tests.support.orders import at, circle, order_event
from tests.support.scenario import produce, utc

pytestmark = pytest.mark.integration

# Per partition, the event loop held as compiling many orders holds it: under a session (a load
# of one partition between two heartbeats), all of them together well over one.
LOAD_SHARE_OF_SESSION = 0.45


class SlowLoadingEvaluator(BreachEvaluator):
    """Counts rebalances, and loads each partition as slowly as a big one loads."""

    assigned = 0
    revoked = 0

    async def assign(self, consumer: AIOKafkaConsumer, numbers: set[int]) -> None:
        self.assigned += 1
        await super().assign(consumer, numbers)

    async def revoke(self, numbers: set[int]) -> None:
        self.revoked += len(numbers)  # a first join revokes nothing, and says so
        await super().revoke(numbers)

    async def _load(self, number: int) -> HeldPartition:
        # blocking on purpose, as a CPU-bound load does
        time.sleep(self.settings.consumer_session_timeout_ms / 1000 * LOAD_SHARE_OF_SESSION)  # noqa: ASYNC251
        return await super()._load(number)


async def test_partitions_that_load_longer_than_the_session_timeout_are_kept(
    own: Settings,
) -> None:
    session_s = own.consumer_session_timeout_ms / 1000
    assert own.partitions * LOAD_SHARE_OF_SESSION > 1.5, "the load must outlast a session"
    now = time.time()
    order = order_event(
        order_id="BB-LOAD-0-1", zones=[circle("home", 0, 0, 100)], valid_from=now - 3600
    )
    lat, lon = at(0, 0)
    signal = msgspec.json.encode({
        "order_id": "BB-LOAD-0-1", "device_id": "EB-1001", "role": "subject", "person_id": "P-1",
        "position": {"device_id": "EB-1001", "ts": utc(now - 60), "lat": lat, "lon": lon,
                     "accuracy_m": 5.0},
    })  # fmt: skip
    await produce(own, own.topic("protection-orders.v1"), [(b"BB-LOAD-0-1", wire.encode(order))])
    await produce(own, own.topic("order-signals.v1"), [(b"BB-LOAD-0-1", signal)])

    engine = make_engine(own)
    evaluator = SlowLoadingEvaluator(own, engine, Metrics("t"), DEFAULT_RULES)
    stop = asyncio.Event()
    running = asyncio.create_task(evaluator.run(stop))
    try:

        async def all_held() -> bool:
            return len(evaluator.held) == own.partitions

        assert await wait_for(all_held, timeout_s=60), "the partitions were never all loaded"

        async def alerted() -> bool:
            return evaluator.metrics.counters["alerts_total"] >= 1

        assert await wait_for(alerted, timeout_s=30), "the fix inside the zone raised no alert"
        # A session more: an evaluator put out of its group would have rejoined by now.
        await asyncio.sleep(1.2 * session_s)
        assert (evaluator.assigned, evaluator.revoked) == (1, 0)
        assert len(evaluator.held) == own.partitions
        assert evaluator.metrics.counters["restarts_total"] == 0
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)
        await engine.dispose()
