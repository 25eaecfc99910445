"""A batch of many new orders (a first start reads the whole orders topic) takes seconds to
compile. The consumer's heartbeat runs on the same event loop, so the evaluator gives the loop
a turn every LOAD_YIELD_EVERY orders: without it, the group put the evaluator out after its
session timeout in every first start of `breachwatch bench pipeline`, and it loaded every
partition again."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer, ConsumerRecord

from schemas import wire
from services.adapters.database import make_engine
from services.adapters.metrics import Metrics
from services.adapters.settings import Settings
from services.breach_evaluator.evaluator import LOAD_YIELD_EVERY, BreachEvaluator, HeldPartition
from services.core.batch import Partition
from tests.support.orders import T0, circle, order_event


def _order_record(offset: int) -> ConsumerRecord[bytes, bytes]:
    order_id = f"BB-BEAT-{offset}"
    value = wire.encode(order_event(order_id=order_id, subject_device=f"EB-BEAT-{offset}",
                                    zones=[circle("home", 0, 0, 100)]))  # fmt: skip
    return ConsumerRecord(
        topic="orders", partition=0, offset=offset, timestamp=0, timestamp_type=0,
        key=order_id.encode(), value=value, checksum=None, serialized_key_size=len(order_id),
        serialized_value_size=len(value), headers=[],
    )  # fmt: skip


async def test_taking_many_orders_in_leaves_the_heartbeat_its_turns() -> None:
    settings = Settings()
    engine = make_engine(settings)  # never connected: taking orders in writes nothing yet
    evaluator = BreachEvaluator(settings, engine, Metrics("t"), settings.rule_config())
    held = HeldPartition(0, Partition(settings.rule_config()))
    records = [_order_record(offset) for offset in range(3 * LOAD_YIELD_EVERY)]
    turns = 0

    async def heartbeat() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    beating = asyncio.create_task(heartbeat())
    await asyncio.sleep(0)
    before = turns
    dirty: set[int] = set()
    unused = AIOKafkaProducer()  # never started: it would only send refused records
    try:
        alerts = await evaluator._apply_orders(held, records, T0, dirty, unused)
    finally:
        beating.cancel()
        await engine.dispose()
    assert alerts == []
    assert len(dirty) == len(records) == len(held.core.orders)
    assert turns - before >= 3, "the loop got no turn while the orders were compiled"
