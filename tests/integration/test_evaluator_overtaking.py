"""A signal fetched before the order version it was routed by: the two inputs of the evaluator
are fetched independently, so this happens. The signal must wait for the order (not be refused
as "not held") while the orders partition has records not yet read, and be refused once they
are all read and the order is still unknown."""

from __future__ import annotations

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas import wire
from services.adapters.database import make_engine
from services.adapters.kafka import make_consumer, make_producer
from services.adapters.metrics import Metrics
from services.adapters.settings import Settings
from services.breach_evaluator.evaluator import BreachEvaluator, HeldPartition, _Work
from services.core.batch import Partition
from tests.support.kafka import wait_for
from tests.support.orders import circle, order_event
from tests.support.scenario import utc

pytestmark = pytest.mark.integration


async def fetch_one(
    consumer: AIOKafkaConsumer, tp: TopicPartition
) -> list[ConsumerRecord[bytes, bytes]]:
    async def fetched() -> list[ConsumerRecord[bytes, bytes]]:
        return list((await consumer.getmany(tp, timeout_ms=200)).get(tp, []))

    records: list[ConsumerRecord[bytes, bytes]] = await wait_for(fetched)
    return records


async def test_a_signal_waits_for_its_unread_order_and_an_unknown_order_is_refused(
    own: Settings,
) -> None:
    order = order_event(order_id="BB-OVERTAKE-1", zones=[circle("home", 0, 0, 100)])
    signal = msgspec.json.encode({
        "order_id": "BB-OVERTAKE-1", "device_id": "EB-1001", "role": "subject",
        "person_id": "P-1", "event": {"device_id": "EB-1001", "ts": utc(0), "type": "heartbeat"},
    })  # fmt: skip
    number = 0
    signals_tp = TopicPartition(own.topic("order-signals.v1"), number)
    orders_tp = TopicPartition(own.topic("protection-orders.v1"), number)
    engine: AsyncEngine = make_engine(own)
    evaluator = BreachEvaluator(own, engine, Metrics("t"), own.rule_config())
    consumer = make_consumer(own, group_id=None, client_id="t-overtaking")
    await consumer.start()
    try:
        consumer.assign([signals_tp, orders_tp])
        await produce_to(own, signals_tp.topic, number, b"BB-OVERTAKE-1", signal)
        await consumer.seek_to_beginning(signals_tp)
        (record,) = await fetch_one(consumer, signals_tp)
        held = HeldPartition(number, Partition(own.rule_config()))

        # Nothing on the orders partition: the order is unknown for good.
        todo = _Work(signals=[record])
        await evaluator._hold_back_overtaking(consumer, held, todo)
        assert len(todo.signals) == 1, "a signal of an order nobody issued must not wait"

        # The order is on its partition, not yet read: the signal waits, and is fetched again.
        await produce_to(own, orders_tp.topic, number, b"BB-OVERTAKE-1", wire.encode(order))
        todo = _Work(signals=[record])
        await evaluator._hold_back_overtaking(consumer, held, todo)
        assert todo.signals == []
        assert await consumer.position(signals_tp) == record.offset
        assert evaluator.metrics.render().count("signals_held_back_total 1") == 1
    finally:
        await consumer.stop()
        await engine.dispose()


async def produce_to(
    settings: Settings, topic: str, partition: int, key: bytes, value: bytes
) -> None:
    producer = make_producer(settings, client_id="t-overtaking")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key, partition=partition)
    finally:
        await producer.stop()
