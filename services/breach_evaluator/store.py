"""Every SQL statement of the breach evaluator: its checkpoint (state per order, with the order
version it belongs to), where it stands in its inputs, and the alerts it decided (outbox).

One transaction per batch holds all three, so a crash at any moment leaves either the whole
batch or none of it. Offsets are advanced with compare-and-set: an evaluator that lost its
partition to another (a stalled process, a rebalance it slept through) cannot overwrite the
new owner's progress; its transaction fails with `Fenced` and it starts over.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.adapters.tables import alert_outbox, consumer_offsets, evaluator_state


class Fenced(RuntimeError):
    """Another evaluator moved this partition's offsets: this one no longer owns it."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    order_id: str
    state: bytes
    order_event: bytes
    delivered: bytes


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


async def load_checkpoints(conn: AsyncConnection, partition: int) -> list[Checkpoint]:
    rows = await conn.execute(
        select(evaluator_state.c.order_id, evaluator_state.c.state, evaluator_state.c.order_event,
               evaluator_state.c.delivered)
        .where(evaluator_state.c.partition == partition)
    )  # fmt: skip
    return [
        Checkpoint(order_id, bytes(state), bytes(event), bytes(delivered))
        for order_id, state, event, delivered in rows
    ]


async def advance_offset(
    conn: AsyncConnection, group: str, topic: str, partition: int, expected: int | None, new: int
) -> None:
    """Move one input offset from `expected` (None: never stored) to `new`, or raise Fenced."""
    if expected is None:
        result = await conn.execute(
            insert(consumer_offsets)
            .values(consumer_group=group, topic=topic, partition=partition, next_offset=new)
            .on_conflict_do_nothing()
        )
    else:
        result = await conn.execute(
            update(consumer_offsets)
            .where(
                consumer_offsets.c.consumer_group == group,
                consumer_offsets.c.topic == topic,
                consumer_offsets.c.partition == partition,
                consumer_offsets.c.next_offset == expected,
            )
            .values(next_offset=new, updated_at=func.now())
        )
    if result.rowcount != 1:
        raise Fenced(f"{topic}[{partition}] moved past {expected} by another evaluator")


async def save_checkpoints(
    conn: AsyncConnection, partition: int, checkpoints: Iterable[Checkpoint]
) -> None:
    rows = [
        {"order_id": c.order_id, "partition": partition, "state": c.state,
         "order_event": c.order_event, "delivered": c.delivered}
        for c in checkpoints
    ]  # fmt: skip
    if not rows:
        return
    statement = insert(evaluator_state)
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=[evaluator_state.c.order_id],
            set_={
                "partition": statement.excluded.partition,
                "state": statement.excluded.state,
                "order_event": statement.excluded.order_event,
                "delivered": statement.excluded.delivered,
                "updated_at": func.now(),
            },
        ),
        rows,
    )


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
