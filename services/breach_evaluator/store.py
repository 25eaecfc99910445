"""Every SQL statement of the breach evaluator: its checkpoint (state per order, with the order
version it belongs to), where it stands in its inputs, and the alerts it decided (outbox).

The checkpoint is evaluator_state (a row per order) with a change log in front of it
(evaluator_changes, a row per partition per batch): a batch appends what it changed, and every
so many batches the evaluator folds the log into evaluator_state. Reading a partition replays the
log over its rows. A partition with an empty log whose batch changed a few orders (live traffic)
writes their rows at once, as the fold of that one log row would.

One statement per batch (a function call, see migration 0008) writes all three, so a crash at
any moment leaves either the whole batch or none of it. Offsets are advanced with
compare-and-set: an evaluator that lost its partition to another (a stalled process, a
rebalance it slept through) cannot overwrite the new owner's progress; its batch fails with
`Fenced` and it starts over.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import asyncpg
import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.adapters.database import DriverConnection
from services.adapters.tables import consumer_offsets, evaluator_changes, evaluator_state
from services.core.batch import cut_track_rows

# An order's entry in the change log: order id, state or nil, delivered, tracks (encoded).
_ChangeRow = tuple[str, bytes | None, bytes, bytes]
_changes_encoder = msgspec.msgpack.Encoder()
_row_per_order_decoder = msgspec.msgpack.Decoder(list[_ChangeRow])  # rows before LoggedChanges


class LoggedChanges(msgspec.Struct, array_like=True, frozen=True):
    """One change log row: what one batch changed in one partition, column by column, so that a
    batch makes no object per order it touched (the row is read back only on a reload)."""

    order_ids: list[str]
    states: list[bytes | None]  # the order's encoded state; None: only its tracks moved
    delivered: list[dict[int, int]]  # {input stream: last source offset evaluated}
    devices: list[tuple[str, ...] | None]  # of its track rows; None: its tracks are in its state
    values: bytes  # the track rows of the orders with devices, one after the other (TrackRows)

    def encoded(self) -> bytes:
        """The row as stored. Encode it when it is made: `delivered` holds the evaluator's own
        dicts, which the next batch moves on."""
        return _changes_encoder.encode(self)

    def per_order(self) -> list[_ChangeRow]:
        """Each order's entry, encoded as a row of evaluator_state holds it."""
        cut = cut_track_rows(self.devices, self.values)
        encode = _changes_encoder.encode
        return [
            (order_id, state, encode(delivered), b"" if tracks is None else encode(tracks))
            for order_id, state, delivered, tracks in zip(
                self.order_ids, self.states, self.delivered, cut, strict=True
            )
        ]


_changes_decoder = msgspec.msgpack.Decoder(LoggedChanges)


def _replayed(blob: bytes) -> list[_ChangeRow]:
    try:
        return _changes_decoder.decode(blob).per_order()
    except msgspec.ValidationError:  # a row written before LoggedChanges, one entry per order
        return _row_per_order_decoder.decode(blob)


class Fenced(RuntimeError):
    """Another evaluator moved this partition's offsets: this one no longer owns it."""


class Checkpoint(msgspec.Struct, frozen=True):  # a Struct: made for every order touched
    order_id: str
    partition: int
    state: bytes | None  # None: the stored state's objects are unchanged (only tracks moved)
    order_event: bytes | None  # None: the stored version is still the one in force
    delivered: bytes
    tracks: bytes  # empty: the tracks are in the state


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    order_id: str
    state: bytes
    order_event: bytes
    delivered: bytes
    tracks: bytes


@dataclass(frozen=True, slots=True)
class OutgoingAlert:
    order_id: str
    alert_id: str
    seq: int
    payload: bytes


async def load_offsets(
    conn: AsyncConnection, group: str, topics: Sequence[str], partition: int
) -> dict[str, int]:
    """The next offset to read per topic of this partition; absent = from the beginning."""
    rows = await conn.execute(
        select(consumer_offsets.c.topic, consumer_offsets.c.next_offset).where(
            consumer_offsets.c.consumer_group == group,
            consumer_offsets.c.topic.in_(topics),
            consumer_offsets.c.partition == partition,
        )
    )
    return {topic: int(offset) for topic, offset in rows.all()}


async def load_checkpoints(conn: AsyncConnection, partition: int) -> LoadedPartition:
    """The partition's checkpoint: its rows in evaluator_state with the change log replayed
    over them, in the order the batches wrote it."""
    rows = await conn.execute(
        select(evaluator_state.c.order_id, evaluator_state.c.state, evaluator_state.c.order_event,
               evaluator_state.c.delivered, evaluator_state.c.tracks)
        .where(evaluator_state.c.partition == partition)
    )  # fmt: skip
    orders = {
        order_id: StoredCheckpoint(
            order_id, bytes(state), bytes(event), bytes(delivered), bytes(tracks)
        )
        for order_id, state, event, delivered, tracks in rows
    }
    logged = await conn.execute(
        select(evaluator_changes.c.changes)
        .where(evaluator_changes.c.partition == partition)
        .order_by(evaluator_changes.c.id)
    )  # fmt: skip
    return replay_log(orders, (blob for (blob,) in logged), partition)


def replay_log(
    orders: dict[str, StoredCheckpoint], log: Iterable[bytes], partition: int
) -> LoadedPartition:
    """The rows of evaluator_state (by order id) with the change log rows replayed over them,
    oldest first."""
    batches = 0
    in_log: set[str] = set()
    for blob in log:
        batches += 1
        for order_id, state, delivered, tracks in _replayed(blob):
            known = orders.get(order_id)
            if known is None:  # its version went to evaluator_state with its first log row
                raise RuntimeError(f"the change log of partition {partition} names {order_id}, "
                                   "which evaluator_state lacks")  # fmt: skip
            orders[order_id] = StoredCheckpoint(
                order_id, known.state if state is None else state, known.order_event,
                delivered, tracks,
            )  # fmt: skip
            in_log.add(order_id)
    return LoadedPartition(list(orders.values()), batches, in_log)


@dataclass(frozen=True, slots=True)
class LoadedPartition:
    checkpoints: list[StoredCheckpoint]
    logged_batches: int  # change log rows not yet folded into evaluator_state
    in_log: set[str]  # order ids the change log names


@dataclass(frozen=True, slots=True)
class OffsetMove:
    topic: str
    partition: int
    expected: int | None  # None: never stored
    new: int


@dataclass(frozen=True, slots=True)
class BatchWrite:
    """Everything one batch writes. A partition logs its changes, folds its log, or (with an
    empty log) writes its changed orders straight in."""

    group: str
    moves: Sequence[OffsetMove] = ()
    logged: Sequence[tuple[int, bytes]] = ()  # (partition, what changed: LoggedChanges.encoded)
    # (partition, the full checkpoint of every order its log names)
    folded: Sequence[tuple[int, Sequence[Checkpoint]]] = ()
    # Orders of logged partitions with a new version: stored at once, with the state it
    # starts from (they are in their partition's log row as well).
    versions: Sequence[Checkpoint] = ()
    # Orders of partitions with nothing logged, written straight into evaluator_state; a
    # None state: the stored one stands.
    written: Sequence[Checkpoint] = ()
    alerts: Sequence[OutgoingAlert] = ()
    published: Sequence[int] = ()  # outbox ids Kafka acknowledged since the last batch

    def __bool__(self) -> bool:
        return any(
            (
                self.moves,
                self.logged,
                self.folded,
                self.versions,
                self.written,
                self.alerts,
                self.published,
            )
        )


async def commit_batch(conn: DriverConnection, batch: BatchWrite) -> list[int]:
    """One batch, atomically, in one round trip (the function of migration 0008): the input
    offsets by compare-and-set (else Fenced, and nothing is written), new order versions into
    evaluator_state, a change log row per logging partition, the folds and the rows written
    straight in, the alerts into the outbox, and the published marks. Returns the outbox ids
    of `batch.alerts`, in order.

    Every checkpoint with a new order version goes to evaluator_state at once, with the state
    it starts from (they are rare, and this way the log never carries versions); replayed, the
    log row of the same batch restores its state over that row, so the order does not matter.
    """
    stored = [c for _, made in batch.folded for c in made]
    stored += batch.written
    fresh = [*batch.versions]
    fresh += (c for c in stored if c.order_event is not None)
    if any(c.state is None or c.order_event is None for c in fresh):
        raise ValueError("an order stored with a new version needs its state")
    folded = [c for c in stored if c.order_event is None]
    moves, alerts = batch.moves, batch.alerts
    try:
        ids = await conn.fetchval(
            _COMMIT_BATCH, batch.group,
            [m.topic for m in moves], [m.partition for m in moves],
            [m.expected for m in moves], [m.new for m in moves],
            [c.order_id for c in fresh], [c.partition for c in fresh],
            [c.state for c in fresh], [c.order_event for c in fresh],
            [c.delivered for c in fresh], [c.tracks for c in fresh],
            [partition for partition, _ in batch.logged],
            [changes for _, changes in batch.logged],
            [partition for partition, _ in batch.folded],
            [c.order_id for c in folded], [c.partition for c in folded],
            [c.state for c in folded], [c.delivered for c in folded], [c.tracks for c in folded],
            [a.order_id for a in alerts], [a.alert_id for a in alerts], [a.seq for a in alerts],
            [a.payload for a in alerts], list(batch.published),
        )  # fmt: skip
    except asyncpg.PostgresError as exc:
        if exc.sqlstate == "BWF01":
            raise Fenced(str(exc)) from None
        if exc.sqlstate == "BWS01":
            raise RuntimeError(str(exc)) from None
        raise
    return list(ids)


_COMMIT_BATCH = "SELECT evaluator_commit_batch(" + ", ".join(f"${n}" for n in range(1, 25)) + ")"


async def vacuum_churned(engine: AsyncEngine) -> None:
    """VACUUM the tables whose rows every batch replaces: the change log (a dozen rows in, and
    out at each fold) and the input offsets. Autovacuum visits a database once a minute by
    default; in a minute at 5k fixes/s the log leaves ~70k dead rows, and each fold's DELETE
    then read ~2,000 heap pages of them, 1-2 ms of a commit of ~3. SKIP_LOCKED: a second
    evaluator vacuuming at the same moment is not waited for."""
    async with engine.connect() as conn:
        autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await autocommit.exec_driver_sql("VACUUM (SKIP_LOCKED) evaluator_changes, consumer_offsets")
