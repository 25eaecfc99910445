"""Every SQL statement of the breach evaluator: its checkpoint (state per order, with the order
version it belongs to), where it stands in its inputs, and the alerts it decided (outbox).

The checkpoint is evaluator_state (a row per order) with a change log in front of it
(evaluator_changes, a row per partition per batch): a batch appends what it changed, and every
so many batches the evaluator folds the log into evaluator_state. Reading a partition replays the
log over its rows.

One transaction per batch holds all three, so a crash at any moment leaves either the whole
batch or none of it. Offsets are advanced with compare-and-set: an evaluator that lost its
partition to another (a stalled process, a rebalance it slept through) cannot overwrite the
new owner's progress; its transaction fails with `Fenced` and it starts over.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
from sqlalchemy import (
    BigInteger,
    Integer,
    String,
    column,
    delete,
    func,
    select,
    text,
    update,
    values,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.adapters.tables import (
    alert_outbox,
    consumer_offsets,
    evaluator_changes,
    evaluator_state,
)

_ChangeRow = tuple[str, bytes | None, bytes, bytes]  # order id, state or nil, delivered, tracks
_changes_encoder = msgspec.msgpack.Encoder()
_changes_decoder = msgspec.msgpack.Decoder(list[_ChangeRow])


class Fenced(RuntimeError):
    """Another evaluator moved this partition's offsets: this one no longer owns it."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
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
    batches = 0
    in_log: set[str] = set()
    for (blob,) in logged:
        batches += 1
        for order_id, state, delivered, tracks in _changes_decoder.decode(blob):
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


async def advance_offsets(conn: AsyncConnection, group: str, moves: Sequence[OffsetMove]) -> None:
    """Move input offsets from where this evaluator last stored them, or raise Fenced. The
    moves of a batch go in one statement (plus one per partition stored the first time), so a
    batch costs the same few round trips however many partitions it touched."""
    for move in [m for m in moves if m.expected is None]:
        result = await conn.execute(
            insert(consumer_offsets)
            .values(consumer_group=group, topic=move.topic, partition=move.partition,
                    next_offset=move.new)
            .on_conflict_do_nothing()
        )  # fmt: skip
        if result.rowcount != 1:
            raise Fenced(f"{move.topic}[{move.partition}] stored by another evaluator")
    updates = [m for m in moves if m.expected is not None]
    if not updates:
        return
    wanted = values(
        column("topic", String), column("partition", Integer),
        column("expected", BigInteger), column("new", BigInteger), name="wanted",
    ).data([(m.topic, m.partition, m.expected, m.new) for m in updates])  # fmt: skip
    result = await conn.execute(
        update(consumer_offsets)
        .where(
            consumer_offsets.c.consumer_group == group,
            consumer_offsets.c.topic == wanted.c.topic,
            consumer_offsets.c.partition == wanted.c.partition,
            consumer_offsets.c.next_offset == wanted.c.expected,
        )
        .values(next_offset=wanted.c.new, updated_at=func.now())
    )
    if result.rowcount != len(updates):
        moved = ", ".join(f"{m.topic}[{m.partition}]" for m in updates)
        raise Fenced(f"one of {moved} was moved by another evaluator")


async def save_checkpoints(conn: AsyncConnection, checkpoints: Sequence[Checkpoint]) -> None:
    """Checkpoints into evaluator_state, as arrays in one statement per kind (no per-row work in
    SQLAlchemy): a fold writes a row per order the change log names. The order version and the
    state, the bulk of a row, go only when they changed."""
    await _upsert_with_versions(conn, [c for c in checkpoints if c.order_event is not None])
    known = [c for c in checkpoints if c.order_event is None]
    if known:
        result = await conn.execute(_UPDATE_STATE, {
            "partitions": [c.partition for c in known], "order_ids": [c.order_id for c in known],
            "states": [c.state for c in known], "delivered": [c.delivered for c in known],
            "tracks": [c.tracks for c in known],
        })  # fmt: skip
        if result.rowcount != len(known):
            raise RuntimeError("a checkpoint without its order version has no stored row")


async def _upsert_with_versions(conn: AsyncConnection, fresh: Sequence[Checkpoint]) -> None:
    if not fresh:
        return
    if any(c.state is None for c in fresh):
        raise ValueError("an order stored with a new version needs its state")
    await conn.execute(_UPSERT_WITH_VERSION, {
        "partitions": [c.partition for c in fresh], "order_ids": [c.order_id for c in fresh],
        "states": [c.state for c in fresh], "events": [c.order_event for c in fresh],
        "delivered": [c.delivered for c in fresh], "tracks": [c.tracks for c in fresh],
    })  # fmt: skip


_UPSERT_WITH_VERSION = text(
    """
    INSERT INTO evaluator_state (order_id, partition, state, order_event, delivered, tracks)
    SELECT v.order_id, v.partition, v.state, v.order_event, v.delivered, v.tracks
    FROM unnest(CAST(:order_ids AS text[]), CAST(:partitions AS int[]), CAST(:states AS bytea[]),
                CAST(:events AS bytea[]), CAST(:delivered AS bytea[]), CAST(:tracks AS bytea[]))
         AS v(order_id, partition, state, order_event, delivered, tracks)
    ON CONFLICT (order_id) DO UPDATE SET
        partition = excluded.partition, state = excluded.state,
        order_event = excluded.order_event, delivered = excluded.delivered,
        tracks = excluded.tracks, updated_at = now()
    """
)
_UPDATE_STATE = text(
    """
    UPDATE evaluator_state AS s
    SET partition = v.partition, state = coalesce(v.state, s.state), delivered = v.delivered,
        tracks = v.tracks, updated_at = now()
    FROM unnest(CAST(:order_ids AS text[]), CAST(:partitions AS int[]), CAST(:states AS bytea[]),
                CAST(:delivered AS bytea[]), CAST(:tracks AS bytea[]))
         AS v(order_id, partition, state, delivered, tracks)
    WHERE s.order_id = v.order_id
    """
)


async def log_changes(
    conn: AsyncConnection, batches: Sequence[tuple[int, Sequence[Checkpoint]]]
) -> None:
    """One batch's checkpoints as a row of the change log per partition, all in one statement
    (a batch of live traffic touches most partitions with a few signals each). New order
    versions also go to evaluator_state (with the state they start from): they are rare, and
    this way the log never has to carry them. Replayed, the log row of the same batch restores
    that order's state over its evaluator_state row, so the order of writes does not matter."""
    if not batches:
        return
    await _upsert_with_versions(
        conn, [c for _, checkpoints in batches for c in checkpoints if c.order_event is not None]
    )
    await conn.execute(insert(evaluator_changes).values([
        {"partition": partition, "changes": _changes_encoder.encode(
            [(c.order_id, c.state, c.delivered, c.tracks) for c in checkpoints]
        )}
        for partition, checkpoints in batches
    ]))  # fmt: skip


async def fold_changes(
    conn: AsyncConnection, partition: int, checkpoints: Sequence[Checkpoint]
) -> None:
    """Fold the change log into evaluator_state: `checkpoints` must hold every order the log
    names, with its full state."""
    await save_checkpoints(conn, checkpoints)
    await conn.execute(delete(evaluator_changes).where(evaluator_changes.c.partition == partition))


async def add_alerts(conn: AsyncConnection, alerts: Sequence[OutgoingAlert]) -> None:
    if alerts:
        await conn.execute(
            alert_outbox.insert(),
            [
                {"order_id": a.order_id, "alert_id": a.alert_id, "seq": a.seq,
                 "payload": a.payload}
                for a in alerts
            ],
        )  # fmt: skip
