"""fix_router: positions and device events (keyed by device) re-keyed to every order the device
belongs to, so that both devices of a contact ban meet in the partition of their order.

The device -> orders map is rebuilt from `bw.protection-orders.v1` (compacted) read from the
beginning, and kept current by reading it on. At least once: a batch of input is committed
only after every signal it produced and every dead letter is acknowledged by the broker; the
evaluator drops what is routed again after a crash by its source offset.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from schemas import wire
from services.adapters.kafka import (
    PeriodicCommit,
    RecordBatches,
    StallWatch,
    consumer_lag,
    dead_letter,
    make_consumer,
    make_producer,
)
from services.adapters.lifecycle import run_with_restarts
from services.adapters.metrics import Metrics
from services.adapters.settings import Settings

log = logging.getLogger(__name__)
SERVICE = "fix_router"
Fetched = dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]


@dataclass(frozen=True, slots=True)
class Membership:
    order_id: str
    role: wire.DeviceRole
    person_id: str


@dataclass
class OrderDirectory:
    """Which orders each device belongs to, from the latest version of every order."""

    by_device: dict[str, dict[str, Membership]] = field(default_factory=dict)
    devices_of_order: dict[str, set[str]] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)

    def apply(self, event: wire.OrderEvent) -> None:
        order = event.order
        if order.version < self.versions.get(order.order_id, 0):
            return  # the outbox relay publishes at least once; an older copy changes nothing
        self.versions[order.order_id] = order.version
        for device in self.devices_of_order.pop(order.order_id, set()):
            members = self.by_device.get(device, {})
            members.pop(order.order_id, None)
            if not members:
                self.by_device.pop(device, None)
        if event.event_type == "order.revoked":
            return
        # Expired orders stay routed: the evaluator decides validity, and keeps late fixes.
        wanted: list[tuple[str, Membership]] = []
        if order.subject.device_id:
            wanted.append(
                (order.subject.device_id,
                 Membership(order.order_id, "subject", order.subject.person_id))
            )  # fmt: skip
        for person in order.protected_persons:
            if person.device_id:
                wanted.append(
                    (person.device_id, Membership(order.order_id, "protected", person.person_id))
                )
        for device, membership in wanted:
            self.by_device.setdefault(device, {})[order.order_id] = membership
            self.devices_of_order.setdefault(order.order_id, set()).add(device)

    def orders_of(self, device_id: str) -> Iterable[Membership]:
        return self.by_device.get(device_id, {}).values()


def route(
    directory: OrderDirectory, record: ConsumerRecord[bytes, bytes], positions_topic: str
) -> list[wire.OrderSignal]:
    """The signals one input record becomes; raises wire.ContractError for a malformed one."""
    source = wire.SignalSource(topic=record.topic, partition=record.partition,
                               offset=record.offset)  # fmt: skip
    if record.value is None:
        raise wire.ContractError("empty record - at `$`")
    position = event = None
    if record.topic == positions_topic:
        position = wire.decode(wire.Position, record.value)
        device_id = position.device_id
    else:
        event = wire.decode(wire.DeviceEvent, record.value)
        device_id = event.device_id
    return [
        wire.OrderSignal(order_id=m.order_id, device_id=device_id, role=m.role,
                         person_id=m.person_id, position=position, event=event, source=source)
        for m in directory.orders_of(device_id)
    ]  # fmt: skip


class FixRouter:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.directory = OrderDirectory()
        self.ready = asyncio.Event()  # the orders topic was read to its end once

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`. After a broker failure it starts over: the directory is rebuilt from
        the orders topic and routing resumes from the committed offsets."""
        await run_with_restarts(
            stop, SERVICE, lambda: self._run(stop),
            on_failure=lambda _: self.metrics.inc("restarts_total"),
        )  # fmt: skip

    async def _run(self, stop: asyncio.Event) -> None:
        settings = self.settings
        producer = make_producer(settings, client_id="bw-fix-router")
        orders = make_consumer(settings, group_id=None, client_id="bw-fix-router-orders")
        inputs = make_consumer(
            settings, settings.topic("positions.v1"), settings.topic("device-events.v1"),
            group_id=f"{settings.topic_prefix}fix-router", client_id="bw-fix-router",
        )  # fmt: skip
        await producer.start()
        await orders.start()
        try:
            await self._catch_up_orders(orders)
            self.ready.set()
            await inputs.start()
            # Either loop failing (a stalled client, a broker gone) restarts the router whole.
            loops = {
                asyncio.create_task(self._follow_orders(orders, stop)),
                asyncio.create_task(self._route_until(stop, inputs, producer)),
            }
            try:
                done, _ = await asyncio.wait(loops, return_when=asyncio.FIRST_COMPLETED)
                for finished in done:
                    finished.result()
            finally:
                for loop in loops:
                    loop.cancel()
                await asyncio.gather(*loops, return_exceptions=True)
                await inputs.stop()
        finally:
            self.ready.clear()
            await orders.stop()
            await producer.stop()

    async def _catch_up_orders(self, orders: AIOKafkaConsumer) -> None:
        topic = self.settings.topic("protection-orders.v1")
        partitions = [TopicPartition(topic, p) for p in range(self.settings.partitions)]
        orders.assign(partitions)
        await orders.seek_to_beginning(*partitions)
        end = await orders.end_offsets(partitions)
        while any([await orders.position(tp) < end[tp] for tp in partitions]):
            self._apply_orders(await orders.getmany(timeout_ms=200))

    async def _follow_orders(self, orders: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        watch = StallWatch()
        while not stop.is_set():
            batch = await orders.getmany(timeout_ms=200)
            if batch:
                watch.moved()
            else:
                await watch.idle(orders)
            self._apply_orders(batch)

    def _apply_orders(
        self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> None:
        for records in batch.values():
            for record in records:
                try:
                    self.directory.apply(wire.decode(wire.OrderEvent, record.value or b""))
                except wire.ContractError as exc:
                    # order_ingest validated it; a bad record here is a bug upstream, not input
                    log.error("fix_router: unreadable order record at offset %s: %s",
                              record.offset, exc)  # fmt: skip
                    self.metrics.inc("order_records_unreadable_total")
        self.metrics.set("devices_routed", len(self.directory.by_device))

    async def _route_until(
        self, stop: asyncio.Event, inputs: AIOKafkaConsumer, producer: AIOKafkaProducer
    ) -> None:
        settings = self.settings
        positions_topic = settings.topic("positions.v1")
        signals_topic = settings.topic("order-signals.v1")
        next_offsets: dict[TopicPartition, int] = {}
        # A commit lost to a crash only means records routed again, which the evaluator drops.
        commits = PeriodicCommit(inputs, quiet=False)
        watch = StallWatch()
        out = await RecordBatches.of(producer, signals_topic)
        while not stop.is_set():
            batch = await inputs.getmany(timeout_ms=100, max_records=5000)
            if not batch:
                self.metrics.set("consumer_lag", consumer_lag(inputs, next_offsets))
                commits.advance({})
                await watch.idle(inputs)
                continue
            watch.moved()
            routed = 0
            for records in batch.values():
                for record in records:
                    try:
                        signals = route(self.directory, record, positions_topic)
                    except wire.ContractError as exc:
                        self.metrics.inc("dead_letters_total")
                        await dead_letter(
                            producer, settings, record, reason=str(exc), service=SERVICE
                        )
                        continue
                    if not signals:
                        self.metrics.inc("records_without_order_total")
                    for signal in signals:
                        await out.add(signal.order_id.encode(), wire.encode(signal))
                    routed += 1
            signalled = await out.flush()
            # Counted once the broker has the signals, so that records_total and signals_total
            # move together and never claim work that is not yet on the signals topic.
            self.metrics.inc("records_total", routed)
            self.metrics.inc("signals_total", signalled)
            moved = {tp: records[-1].offset + 1 for tp, records in batch.items()}
            next_offsets.update(moved)
            commits.advance(moved)
            self.metrics.set("consumer_lag", consumer_lag(inputs, next_offsets))
        await commits.flush()
