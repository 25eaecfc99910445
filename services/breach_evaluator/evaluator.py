"""breach_evaluator: order signals and order versions in (co-partitioned by order id), the pure
core's decisions out, through one Postgres transaction per batch.

Per Kafka partition it holds a `services.core.batch.Partition` with the orders of that
partition. Each batch writes, in one statement (a transaction of its own): the checkpoint of
every order whose state changed (a row of the change log, see `store`; new order versions beside
it), the alerts decided (the outbox), and the next input offsets. The write runs while the next
batch is evaluated; one is in flight at a time. Once it has landed, the batch's alerts go to
Kafka straight away; the outbox relay is the safety net for those a crash left unsent. On
assignment a partition is rebuilt from that checkpoint and the consumer seeks to the stored
offsets, so the offsets Kafka keeps for the group are informational only. Any failure
(Postgres, Kafka, a fenced offset) drops every partition and starts over from the checkpoint:
nothing is half-applied. Wall-clock timers (signal lost, expiry) are ticked once a second and
survive restarts because their inputs (last fix received, watch start) are part of the
checkpoint.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import defaultdict
from collections.abc import Container
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from geo.shapes import ZoneGeometryError
from schemas import wire
from services.adapters.database import DriverConnection, driver_connection
from services.adapters.kafka import (
    PeriodicCommit,
    StallWatch,
    Watermarks,
    consumer_lag,
    dead_letter,
    make_consumer,
    make_producer,
)
from services.adapters.lifecycle import run_with_restarts, sleep_or_stop, wall_clock
from services.adapters.metrics import Metrics
from services.adapters.settings import Settings
from services.breach_evaluator import store
from services.core import CompiledOrder, Fix, HealthEvent, OrderState, RuleConfig, Signal
from services.core import compile_order as compile_core_order
from services.core.batch import Partition, TrackRows
from services.core.bulk import compile_now

log = logging.getLogger(__name__)
SERVICE = "breach_evaluator"
TICK_EVERY_S = 1.0
FETCH_RECORDS = 10_000
# Catch-up batch size: a checkpoint costs about as much as evaluating a signal, so the fewer
# checkpoints per signal, the faster a backlog goes; bounded so that one batch stays well within
# the consumer's session timeout and its memory small.
BATCH_RECORDS = 60_000
# Change log rows per partition between folds into evaluator_state: a fold rewrites a row per
# order the log names, so rarer folds write fewer rows; a reload replays at most this many.
# Partitions take turns (see HeldPartition.changes), so a steady stream folds one partition in
# a batch, not all of them every sixteenth batch.
FOLD_EVERY_BATCHES = 16
# A partition with nothing logged writes a batch that changed at most this many orders straight
# into evaluator_state (see HeldPartition.changes). Live traffic changes a few orders of a
# partition a batch, and few of them again before the next fold: through the log, each was
# encoded and sent twice, the second time with its whole state. A catch-up batch changes
# thousands, most of them again in the next batches, and goes on through the log.
WRITE_THROUGH_MAX = 64
# Orders compiled between two yields to the event loop (~50 ms), as a partition loads and as
# a batch takes new orders in.
LOAD_YIELD_EVERY = 1_000
# Alerts the evaluator sent but could not mark published (it died, the broker was away) are
# left to the outbox relay once this old: long enough that the relay never races a healthy
# evaluator (marks land within a second, with the next batch or tick), short for a control room.
ALERT_RELAY_GRACE_S = 5.0
# How often the tables every batch churns are vacuumed (see store.vacuum_churned): dead rows
# of ~2 s cost a fold's DELETE ~0.1 ms, a VACUUM ~8 ms, at 5k fixes/s.
VACUUM_EVERY_S = 2.0
_encoder = msgspec.msgpack.Encoder()
_state_decoder = msgspec.msgpack.Decoder(OrderState)
_delivered_decoder = msgspec.msgpack.Decoder(dict[int, int])
_tracks_decoder = msgspec.msgpack.Decoder(TrackRows)
_NOTHING_DELIVERED: dict[int, int] = {}  # only ever encoded, never changed


def to_core(signal: wire.OrderSignal) -> Signal:
    """The core's view of a routed signal; raises wire.ContractError if it carries nothing."""
    if signal.position is not None:
        p = signal.position
        return Fix(device_id=signal.device_id, role=signal.role, person_id=signal.person_id,
                   t=p.ts.timestamp(), lat=p.lat, lon=p.lon, accuracy_m=p.accuracy_m,
                   battery_pct=p.battery_pct)  # fmt: skip
    if signal.event is not None:
        e = signal.event
        return HealthEvent(device_id=signal.device_id, role=signal.role,
                           person_id=signal.person_id, t=e.ts.timestamp(), type=e.type,
                           battery_pct=e.battery_pct)  # fmt: skip
    raise wire.ContractError("a signal needs a position or an event - at `$`")


def compile_order(raw: bytes) -> CompiledOrder:
    """Raises wire.ContractError or ZoneGeometryError for a record the core cannot use."""
    return compile_core_order(wire.decode(wire.OrderEvent, raw))


@dataclass
class HeldPartition:
    number: int
    core: Partition
    # where each input stands once the batch in flight has landed (Postgres has the rest)
    offsets: dict[str, int | None] = field(default_factory=dict)
    # order id -> {input stream: last source offset evaluated}, to drop the signals fix_router
    # routes again after a crash (it is at least once). A stream is a partition of the
    # positions topic (its number) or of the device events topic (-1 - its number).
    delivered: dict[str, dict[int, int]] = field(default_factory=dict)
    # order id -> an order version applied by this batch, stored with it (the stored copy is
    # all a reload needs, so none is held in memory after that)
    new_versions: dict[str, bytes] = field(default_factory=dict)
    since_fold: set[int] = field(default_factory=set)  # orders the change log names
    # orders whose state a change log row carries: the stored state is older, so the fold
    # stores theirs (the others' stored state stands, and the fold sends only their tracks)
    restated_since_fold: set[int] = field(default_factory=set)
    logged_batches: int = 0  # change log rows since the last fold
    last_tick: float = 0.0

    def changes(self, dirty: set[int], idle: bool, batch: int) -> PartitionChanges:
        """What batch number `batch` of the evaluator writes of the partition. With nothing
        logged and at most WRITE_THROUGH_MAX orders changed (live traffic), their rows of
        evaluator_state at once. Otherwise a row of the change log with what the batch changed;
        on the partition's turn, and when the input is idle (see `_process`), the
        checkpoint of every order the log names, folded into evaluator_state: its tracks, and
        its state where a log row or this batch changed it. Folding when idle keeps the fold
        after a catch-up, a row for every order caught up, from landing on the first fixes of
        live traffic.

        The turn comes every FOLD_EVERY_BATCHES batches, at a phase set by the partition's
        number. When every partition counted its own batches, a steady stream (which touches
        them all in every batch) folded them all in the same batch: at 5k fixes/s, ~900 orders
        every sixteenth batch, which held that batch's alerts back 10-20 ms. A partition that
        has no work on its turn folds once its log holds FOLD_EVERY_BATCHES rows."""
        turn = (batch + self.number) % FOLD_EVERY_BATCHES == 0
        fold = self.logged_batches > 0 and (
            turn or self.logged_batches + 1 >= FOLD_EVERY_BATCHES or (idle and not dirty)
        )
        if fold:
            made = self._checkpoints(
                sorted(self.since_fold | dirty), full=False, also=self.restated_since_fold
            )
            self.new_versions.clear()
            self.since_fold.clear()
            self.restated_since_fold.clear()
            self.logged_batches = 0
            return PartitionChanges(folded=made)
        if not dirty:
            return PartitionChanges()
        indices = sorted(dirty)
        if self.logged_batches == 0 and len(indices) <= WRITE_THROUGH_MAX:
            # What the log row would say, applied to the stored rows at once: a state only
            # where it changed (a new version always comes with its whole state).
            written = self._checkpoints(indices, full=bool(self.new_versions))
            self.new_versions.clear()
            return PartitionChanges(written=written)
        rows = self.core.changed(indices)
        orders, encode, delivered = self.core.orders, _encoder.encode, self.delivered.get
        order_ids = [orders[i].order_id for i in indices]
        logged = store.LoggedChanges(
            order_ids, [None if state is None else encode(state) for state in rows.states],
            [delivered(order_id, _NOTHING_DELIVERED) for order_id in order_ids],
            rows.devices, rows.values,
        )  # fmt: skip
        versions = []
        if self.new_versions:
            for order_id, state, seen, tracks in zip(
                order_ids, logged.states, logged.delivered, rows.track_rows(), strict=True
            ):
                raw = self.new_versions.get(order_id)
                if raw is not None:
                    versions.append(store.Checkpoint(
                        order_id, self.number, state, raw, encode(seen),
                        b"" if tracks is None else encode(tracks),
                    ))  # fmt: skip
            self.new_versions.clear()
        self.since_fold |= dirty
        self.restated_since_fold.update(
            i for i, state in zip(indices, rows.states, strict=True) if state is not None
        )
        self.logged_batches += 1
        return PartitionChanges(logged=logged.encoded(), versions=versions)

    def _checkpoints(
        self, indices: list[int], *, full: bool, also: Container[int] = ()
    ) -> list[store.Checkpoint]:
        """Rows for evaluator_state; with `full`, each with its state, else the states that
        changed since the last write and those of the orders in `also`."""
        orders, number, encode = self.core.orders, self.number, _encoder.encode
        new_version, delivered = self.new_versions.get, self.delivered.get
        states = self.core.states
        made = []
        for i, checkpoint in zip(indices, self.core.checkpoint(indices, full=full), strict=True):
            order_id = orders[i].order_id
            state, tracks = checkpoint.state, checkpoint.tracks
            if state is None and i in also:
                state = states[i]
            made.append(store.Checkpoint(
                order_id, number, None if state is None else encode(state), new_version(order_id),
                encode(delivered(order_id, _NOTHING_DELIVERED)),
                b"" if tracks is None else encode(tracks),
            ))  # fmt: skip
        return made

    def take_back(self, checkpoint: store.StoredCheckpoint, now: float, *, logged: bool) -> None:
        """An order from the partition's stored checkpoint (`logged`: the change log names it)."""
        order = compile_order(checkpoint.order_event)
        self.core.restore(
            order, now, _state_decoder.decode(checkpoint.state),
            _tracks_decoder.decode(checkpoint.tracks) if checkpoint.tracks else None,
        )  # fmt: skip
        if checkpoint.delivered:
            self.delivered[order.order_id] = _delivered_decoder.decode(checkpoint.delivered)
        if logged:
            i = self.core.index[order.order_id]
            self.since_fold.add(i)
            # whether the log gave it a state is not kept: the next fold stores its state
            self.restated_since_fold.add(i)

    def positions(self) -> dict[TopicPartition, int]:
        """Where each input of the partition stands, for the inputs with a known offset."""
        return {
            TopicPartition(topic, self.number): offset
            for topic, offset in self.offsets.items()
            if offset is not None
        }

    def behind(self, consumer: Watermarks) -> bool:
        """Whether an input of the partition has records on the broker past where it stands,
        by the high watermarks of the consumer's latest fetches."""
        return consumer_lag(consumer, self.positions()) > 0

    def redelivered(self, order_id: str, source: wire.SignalSource, positions_topic: str) -> bool:
        """True for a signal of a held order whose source record this order has already
        evaluated; else the source is remembered as evaluated."""
        stream = source.partition if source.topic == positions_topic else -1 - source.partition
        seen = self.delivered.setdefault(order_id, {})
        if source.offset <= seen.get(stream, -1):
            return True
        seen[stream] = source.offset
        return False


@dataclass(frozen=True, slots=True)
class PartitionChanges:
    """A partition's share of a batch write: a change log row, or a fold."""

    logged: bytes | None = None  # store.LoggedChanges, encoded
    versions: list[store.Checkpoint] = field(default_factory=list)  # logged, with a new version
    folded: list[store.Checkpoint] = field(default_factory=list)  # every order the log names
    written: list[store.Checkpoint] = field(default_factory=list)  # nothing logged: straight in


@dataclass
class _Work:
    orders: list[ConsumerRecord[bytes, bytes]] = field(default_factory=list)
    signals: list[ConsumerRecord[bytes, bytes]] = field(default_factory=list)

    def next_offsets(self, orders_topic: str, signals_topic: str) -> list[tuple[str, int]]:
        """(topic, offset after the last record) for each input this work read from."""
        return [
            (topic, records[-1].offset + 1)
            for topic, records in ((orders_topic, self.orders), (signals_topic, self.signals))
            if records
        ]


class BreachEvaluator:
    def __init__(
        self, settings: Settings, engine: AsyncEngine, metrics: Metrics, rules: RuleConfig
    ) -> None:
        self.settings, self.engine, self.metrics, self.rules = settings, engine, metrics, rules
        self.signals_topic = settings.topic("order-signals.v1")
        self.positions_topic = settings.topic("positions.v1")
        self.orders_topic = settings.topic("protection-orders.v1")
        self.alerts_topic = settings.topic("alerts.v1")
        self.topics = (self.signals_topic, self.orders_topic)
        # One group per topic prefix: deployments (and test runs) sharing a broker stay apart.
        self.group = f"{settings.topic_prefix}breach-evaluator"
        self.held: dict[int, HeldPartition] = {}
        # Assigned, paused, and not loaded yet: the consume loop loads them one at a time.
        self.to_load: set[int] = set()
        self.lock = asyncio.Lock()  # a batch and a rebalance never interleave
        self.ready = asyncio.Event()
        self._commit: asyncio.Task[None] | None = None  # the batch write in flight
        self._batches = 0  # batches processed, for the partitions' turns to fold
        # Alerts this process published straight after their batch landed: (outbox id, the
        # broker's answer). Acknowledged ones are marked published by the next batch's write.
        self._publishing: list[tuple[int, asyncio.Future[Any]]] = []

    async def run(self, stop: asyncio.Event) -> None:
        # Before the first batch, not in it: the first catch-up batch would wait for it.
        await asyncio.to_thread(compile_now)
        vacuum = asyncio.create_task(self._vacuum_until(stop))
        try:
            await run_with_restarts(
                stop, SERVICE, lambda: self._run(stop),
                on_failure=lambda _: self.metrics.inc("restarts_total"),
            )  # fmt: skip
        finally:
            vacuum.cancel()
            await asyncio.gather(vacuum, return_exceptions=True)

    async def _vacuum_until(self, stop: asyncio.Event) -> None:
        """Beside the batches, on a connection of its own: a failure is logged and tried again
        next time (the batches' own failures restart the service)."""
        while True:
            await sleep_or_stop(stop, VACUUM_EVERY_S)
            if stop.is_set():
                return
            try:
                await store.vacuum_churned(self.engine)
            except (SQLAlchemyError, OSError) as exc:
                log.warning("breach_evaluator: vacuum failed: %s", type(exc).__name__)

    async def _run(self, stop: asyncio.Event) -> None:
        producer = make_producer(self.settings, client_id="bw-breach-evaluator")
        consumer = make_consumer(
            self.settings, group_id=self.group, client_id="bw-breach-evaluator",
            max_poll_records=FETCH_RECORDS,
        )  # fmt: skip
        self.held.clear()
        self.to_load.clear()
        self._publishing.clear()  # unmarked rows of a run that failed: the relay's, after a while
        await producer.start()
        try:
            async with driver_connection(self.engine) as db:
                await self._consume(stop, consumer, producer, db)
        finally:
            if self._commit is not None:  # failed before it landed: Postgres has the truth
                self._commit.cancel()
                # wait() raises neither the batch's failure nor its cancellation, only ours
                await asyncio.wait([self._commit])
                if not self._commit.cancelled():
                    self._commit.exception()  # retrieved: the failure that matters is raised
                self._commit = None
            self.held.clear()
            await producer.stop()

    async def _consume(
        self, stop: asyncio.Event, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer,
        db: DriverConnection,
    ) -> None:  # fmt: skip
        consumer.subscribe(list(self.topics), listener=_Rebalance(self, consumer))
        await consumer.start()
        self.ready.set()
        # Informational only (lag as Kafka sees it): the truth is in Postgres.
        commits = PeriodicCommit(consumer, quiet=True)
        watch = StallWatch()
        try:
            while not stop.is_set():
                if self.to_load:
                    while self.to_load:
                        await self.load_next(consumer)
                    watch.moved()  # a load is progress: the stall clock starts after it
                fetched = await _fetch(consumer)
                if fetched:
                    watch.moved()
                else:
                    await watch.idle(consumer)
                async with self.lock:
                    await self._process(fetched, producer, consumer, db)
                    self.metrics.set("consumer_lag", sum(
                        consumer_lag(consumer, held.positions()) for held in self.held.values()
                    ))  # fmt: skip
                commits.advance({tp: recs[-1].offset + 1 for tp, recs in fetched.items()})
            await self._committed()
        finally:
            self.ready.clear()
            await consumer.stop()

    # ------------------------------------------------------------ partitions

    async def assign(self, consumer: AIOKafkaConsumer, numbers: set[int]) -> None:
        """New partitions are paused here and loaded later by the consume loop. aiokafka sends no
        heartbeat while a rebalance listener runs, and a member silent for the session timeout
        is put out of the group, which rebalances again: loading 100k orders here (~10 s) made
        a restarted evaluator lose its partitions, load them again, and lose them again, for
        minutes."""
        async with self.lock:
            new = numbers - set(self.held)
            consumer.pause(*self._partitions(new))
            self.to_load |= new

    async def load_next(self, consumer: AIOKafkaConsumer) -> None:
        """Load one assigned partition from Postgres, seek it to its stored offsets, resume it.
        The loop loads all of them before its next batch: interleaved with catch-up batches of
        the partitions loaded first, the last one waited twice as long to be served."""
        async with self.lock:
            if not self.to_load:
                return  # revoked meanwhile
            await self._committed()  # a partition is loaded from what has landed
            number = min(self.to_load)
            held = await self._load(number)
            self.to_load.discard(number)
            self.held[number] = held
            for tp in self._partitions({number}):
                offset = held.offsets.get(tp.topic)
                if offset is None:
                    await consumer.seek_to_beginning(tp)
                else:
                    consumer.seek(tp, offset)
            consumer.resume(*self._partitions({number}))
            self.metrics.set("partitions_held", len(self.held))

    async def revoke(self, numbers: set[int]) -> None:
        async with self.lock:
            await self._committed()  # the next owner starts where this one's last batch landed
            self.to_load -= numbers
            for number in numbers:
                self.held.pop(number, None)
            self.metrics.set("partitions_held", len(self.held))

    def _partitions(self, numbers: set[int]) -> list[TopicPartition]:
        return [TopicPartition(t, number) for number in sorted(numbers) for t in self.topics]

    async def _load(self, number: int) -> HeldPartition:
        started = time.perf_counter()
        async with self.engine.connect() as conn:
            offsets = await store.load_offsets(conn, self.group, self.topics, number)
            loaded = await store.load_checkpoints(conn, number)
        held = HeldPartition(number, Partition(self.rules))
        held.offsets = {topic: offsets.get(topic) for topic in self.topics}
        held.logged_batches = loaded.logged_batches
        now = wall_clock()
        for n, checkpoint in enumerate(loaded.checkpoints, start=1):
            if n % LOAD_YIELD_EVERY == 0:
                await asyncio.sleep(0)  # the heartbeat and the other partitions' I/O get a turn
            held.take_back(checkpoint, now, logged=checkpoint.order_id in loaded.in_log)
        # Partitions tick a second apart each, but not all at once: spread over the second, a
        # tick delays the signals of one batch by a twelfth of what all of them together would.
        phase = number % self.settings.partitions / self.settings.partitions
        held.last_tick = now - phase * TICK_EVERY_S
        self.metrics.observe("partition_load", time.perf_counter() - started)
        log.info("breach_evaluator: partition %s loaded with %s orders", number,
                 len(loaded.checkpoints))  # fmt: skip
        return held

    # ------------------------------------------------------------ one batch

    async def _process(
        self, fetched: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
        producer: AIOKafkaProducer, consumer: AIOKafkaConsumer, db: DriverConnection,
    ) -> None:  # fmt: skip
        now = wall_clock()
        work: dict[int, _Work] = defaultdict(_Work)
        for tp, records in fetched.items():
            held = self.held.get(tp.partition)
            if held is None:
                continue  # revoked while fetched; the new owner reads them from its checkpoint
            # A batch fetched before a rebalance can be handed over after it, when the partition
            # was reloaded and the consumer sought back to the stored offset: the records below
            # that offset are then read twice. Whatever lies below it is already applied.
            stored = held.offsets.get(tp.topic)
            if stored is not None and records and records[0].offset < stored:
                records = [record for record in records if record.offset >= stored]
                if not records:
                    continue
            if tp.topic == self.orders_topic:
                work[tp.partition].orders += records
            else:
                work[tp.partition].signals += records
        for number, held in self.held.items():
            if number not in work and now - held.last_tick >= TICK_EVERY_S:
                work[number] = _Work()
        if not work:
            return
        started = time.perf_counter()
        self._batches += 1
        outgoing: list[store.OutgoingAlert] = []
        plans = []
        for number, todo in work.items():
            held = self.held[number]
            dirty: set[int] = set()
            alerts = await self._apply_orders(held, todo.orders, now, dirty, producer)
            await self._hold_back_overtaking(consumer, held, todo)
            alerts += await self._evaluate(held, todo.signals, now, dirty, producer)
            if now - held.last_tick >= TICK_EVERY_S:
                ticked, touched = held.core.tick(now)
                alerts += ticked
                dirty |= touched
                # on the partition's own phase of the second, however late this batch is
                held.last_tick = now - (now - held.last_tick) % TICK_EVERY_S
            outgoing += [
                store.OutgoingAlert(a.order_id, a.alert_id, a.seq, wire.encode(a)) for a in alerts
            ]
            plans.append((held, todo, dirty))
            if self._commit is not None and not self._commit.done():
                # The last batch's write lands while this one is evaluated. A turn of the event
                # loop between partitions lets it publish its alerts at once: otherwise they
                # waited for the whole of this batch (~3 ms at 5k fixes/s).
                await asyncio.sleep(0)
        logged: list[tuple[int, bytes]] = []
        folded: list[tuple[int, list[store.Checkpoint]]] = []
        versions: list[store.Checkpoint] = []
        written: list[store.Checkpoint] = []
        moves: list[store.OffsetMove] = []
        for held, todo, dirty in plans:
            # Idle: the fetch came back empty and nothing more waits on the broker. Not a
            # partition missing from one fetch: in a catch-up that happens all the time, and a
            # fold there costs a row per order. Nor an empty fetch in a catch-up, which also
            # happens (5 in a 1M-signal catch-up, each folding every partition for ~0.1 s).
            idle = not fetched and not held.behind(consumer)
            changes = held.changes(dirty, idle=idle, batch=self._batches)
            if changes.logged is not None:
                logged.append((held.number, changes.logged))
            if changes.folded:
                folded.append((held.number, changes.folded))
            versions += changes.versions
            written += changes.written
            for topic, new in todo.next_offsets(self.orders_topic, self.signals_topic):
                moves.append(store.OffsetMove(topic, held.number, held.offsets.get(topic), new))
                # Where the partition stands once the batch lands; the next batch moves it on
                # from here. Should the commit fail, every partition is reloaded from Postgres.
                held.offsets[topic] = new
        signals = sum(len(todo.signals) for _, todo, _ in plans)
        await self._committed()  # one write in flight at a time, in batch order
        batch = store.BatchWrite(
            self.group, moves=moves, logged=logged, folded=folded, versions=versions,
            written=written, alerts=outgoing,
        )  # fmt: skip
        self._commit = asyncio.create_task(self._write(db, producer, batch, signals, started))

    async def _write(
        self, db: DriverConnection, producer: AIOKafkaProducer, batch: store.BatchWrite,
        signals: int, started: float,
    ) -> None:  # fmt: skip
        """One batch's write, then its alerts straight to Kafka. It runs while the next batch
        is evaluated: Postgres and Python each did their share one after the other before, and
        the process idled a third of a catch-up waiting on the database.

        The alerts go out only once their batch has landed (an alert never runs ahead of the
        state that decided it), in batch order, without waiting for the broker: the next write
        marks the acknowledged ones published. Rows left unmarked (a crash, a broker away) are
        published by the outbox relay once they are older than its grace period."""
        batch = dataclasses.replace(batch, published=self._acknowledged())
        if not batch:
            return
        ids = await store.commit_batch(db, batch)
        self.metrics.inc("signals_total", signals)
        self.metrics.inc("alerts_total", len(batch.alerts))
        self.metrics.observe("batch_commit", time.perf_counter() - started)
        for outbox_id, alert in zip(ids, batch.alerts, strict=True):
            sent = await producer.send(self.alerts_topic, alert.payload,
                                       key=alert.order_id.encode())  # fmt: skip
            self._publishing.append((outbox_id, sent))

    def _acknowledged(self) -> list[int]:
        """Outbox ids of the alerts the broker has acknowledged since the last write."""
        done, waiting = [], []
        for outbox_id, sent in self._publishing:
            if not sent.done():
                waiting.append((outbox_id, sent))
            elif sent.cancelled() or sent.exception() is not None:
                self.metrics.inc("alerts_left_to_relay_total")  # the relay publishes it later
            else:
                done.append(outbox_id)
        self._publishing = waiting
        return done

    async def _committed(self) -> None:
        """Wait for the batch in flight to land; its failure is raised here."""
        if self._commit is not None:
            try:
                await self._commit
            finally:
                self._commit = None

    async def _apply_orders(
        self, held: HeldPartition, records: list[ConsumerRecord[bytes, bytes]], now: float,
        dirty: set[int], producer: AIOKafkaProducer,
    ) -> list[wire.Alert]:  # fmt: skip
        alerts: list[wire.Alert] = []
        for n, record in enumerate(records, start=1):
            if n % LOAD_YIELD_EVERY == 0:
                # A first start compiles a batch of up to 60k orders (~20 s): without a turn
                # of the event loop no heartbeat went out, the group put the evaluator out
                # after its session timeout, and it loaded every partition again.
                await asyncio.sleep(0)
            raw = record.value or b""
            try:
                order = compile_order(raw)
            except (wire.ContractError, ZoneGeometryError) as exc:
                await self._dead_letter(producer, record, str(exc))
                continue
            known = held.core.index.get(order.order_id)
            if known is not None and held.core.orders[known].version >= order.version:
                continue  # a replayed copy (the relay publishes at least once)
            alerts += held.core.upsert(order, now)
            held.new_versions[order.order_id] = raw
            dirty.add(held.core.index[order.order_id])
        return alerts

    async def _hold_back_overtaking(
        self, consumer: AIOKafkaConsumer, held: HeldPartition, todo: _Work
    ) -> None:
        """The two inputs are fetched independently, so a signal can arrive before the order
        version fix_router routed it by. Such a signal, and everything after it in its
        partition, waits for a later fetch while the orders partition has records not yet read;
        an order still unknown once they are all read is refused (DLQ) by the core."""
        for n, record in enumerate(todo.signals):
            order_id = (record.key or b"").decode(errors="replace")  # signals are keyed by order
            if order_id in held.core.index:
                continue
            orders_tp = TopicPartition(self.orders_topic, held.number)
            read = todo.orders[-1].offset + 1 if todo.orders else held.offsets.get(
                self.orders_topic) or 0  # fmt: skip
            end = (await consumer.end_offsets([orders_tp]))[orders_tp]
            if read < end:
                consumer.seek(TopicPartition(self.signals_topic, held.number), record.offset)
                del todo.signals[n:]
                self.metrics.inc("signals_held_back_total")
            return

    async def _evaluate(
        self, held: HeldPartition, records: list[ConsumerRecord[bytes, bytes]], now: float,
        dirty: set[int], producer: AIOKafkaProducer,
    ) -> list[wire.Alert]:  # fmt: skip
        if not records:
            return []
        items: list[tuple[str, Signal]] = []
        sources: list[ConsumerRecord[bytes, bytes]] = []
        rows: list[int] = []
        redelivered = 0
        unsourced = False  # a signal whose order is not in `dirty` yet, if it is held
        row_of = held.core.index.get
        # One pass that keeps nothing of a decoded record: at a catch-up's 60k signals a batch,
        # records held to the batch's end cost the garbage collector ~0.8 us a signal.
        for record in records:
            try:
                signal = wire.decode(wire.OrderSignal, record.value or b"")
                core_signal = to_core(signal)
            except wire.ContractError as exc:
                await self._dead_letter(producer, record, str(exc))
                continue
            order_id, source = signal.order_id, signal.source
            row = row_of(order_id, -1)  # none: the core refuses it
            if row >= 0 and source is not None:
                if held.redelivered(order_id, source, self.positions_topic):
                    redelivered += 1
                    continue
                dirty.add(row)  # its delivered offsets moved
            else:
                unsourced = True
            items.append((order_id, core_signal))
            sources.append(record)
            rows.append(row)
        self.metrics.inc("signals_redelivered_total", redelivered)
        if not items:
            return []
        outcome = held.core.evaluate(held.core.batch(items, rows), now)
        for position, reason in outcome.rejected:
            await self._dead_letter(producer, sources[position], reason)
        dirty |= outcome.scalar_touched
        if unsourced:  # else every order a quiet fix moved is in `dirty` already
            dirty.update(outcome.quiet_orders.tolist())
        return outcome.alerts

    async def _dead_letter(
        self, producer: AIOKafkaProducer, record: ConsumerRecord[bytes, bytes], reason: str
    ) -> None:
        self.metrics.inc("dead_letters_total")
        await dead_letter(producer, self.settings, record, reason=reason, service=SERVICE)


async def _fetch(
    consumer: AIOKafkaConsumer,
) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
    """One batch: what is there now, and while fetches come back full (a backlog), more of it,
    up to BATCH_RECORDS. A quiet stream gets small batches and low latency; a backlog gets big
    ones, where most orders recur, so each is checkpointed once for several of its signals."""
    fetched: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = await consumer.getmany(
        timeout_ms=20, max_records=FETCH_RECORDS
    )
    count = last = sum(map(len, fetched.values()))
    while last == FETCH_RECORDS and count < BATCH_RECORDS:
        more = await consumer.getmany(timeout_ms=0, max_records=FETCH_RECORDS)
        for tp, records in more.items():
            fetched.setdefault(tp, []).extend(records)
        last = sum(map(len, more.values()))
        count += last
    return fetched


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, evaluator: BreachEvaluator, consumer: AIOKafkaConsumer) -> None:
        self.evaluator, self.consumer = evaluator, consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.evaluator.revoke({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.evaluator.assign(self.consumer, {tp.partition for tp in assigned})
