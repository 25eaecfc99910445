"""The evaluator's batch write (real PostgreSQL): offsets move by compare-and-set, so an
evaluator that lost its partition to another cannot overwrite the new owner's progress and
writes nothing of its batch; checkpoints keep what they do not carry; the change log replays
over the state rows and folds into them; alerts enter the outbox and get marked published."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator

import msgspec
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.adapters.database import driver_connection, make_engine
from services.adapters.metrics import Metrics
from services.adapters.settings import Settings
from services.adapters.tables import alert_outbox, evaluator_changes, evaluator_state
from services.breach_evaluator import evaluator as evaluator_module
from services.breach_evaluator import store
from services.breach_evaluator.evaluator import BreachEvaluator
from services.breach_evaluator.store import (
    BatchWrite,
    Checkpoint,
    Fenced,
    LoggedChanges,
    OffsetMove,
)
from services.core import RuleConfig
from services.core.batch import TRACK_COLUMNS, TrackRows
from tests.support.kafka import wait_for

pytestmark = pytest.mark.integration

GROUP = "test-fencing"
_encode = msgspec.msgpack.Encoder().encode


@pytest.fixture
async def engine(migrated: Settings) -> AsyncIterator[AsyncEngine]:
    made = make_engine(migrated)
    yield made
    await made.dispose()


async def stored(engine: AsyncEngine, group: str, partition: int) -> dict[str, int]:
    async with engine.connect() as conn:
        return await store.load_offsets(conn, group, ["signals", "orders"], partition)


async def commit(engine: AsyncEngine, batch: BatchWrite) -> list[int]:
    async with driver_connection(engine) as db:
        return await store.commit_batch(db, batch)


async def loaded(engine: AsyncEngine, partition: int) -> store.LoadedPartition:
    async with engine.connect() as conn:
        return await store.load_checkpoints(conn, partition)


async def test_offsets_move_together_and_a_stale_owner_is_fenced(engine: AsyncEngine) -> None:
    group = f"{GROUP}-{id(engine)}"
    await commit(engine, BatchWrite(group, [  # first store: inserts
        OffsetMove("signals", 0, None, 10), OffsetMove("orders", 0, None, 3),
        OffsetMove("signals", 1, None, 7),
    ]))  # fmt: skip
    await commit(engine, BatchWrite(group, [  # the owner moves on: one statement, all or nothing
        OffsetMove("signals", 0, 10, 25), OffsetMove("orders", 0, 3, 4),
        OffsetMove("signals", 1, 7, 9),
    ]))  # fmt: skip
    assert await stored(engine, group, 0) == {"signals": 25, "orders": 4}

    # A stale owner still believes partition 1 is at 7: its whole batch is refused, the
    # checkpoint and the alerts that came with it too.
    partition = 3000 + id(engine) % 1000
    order_id = f"BB-fenced-{partition}"
    hot_order_logged = LoggedChanges([order_id], [b"s"], [{0: 1}], [None], b"").encoded()
    with pytest.raises(Fenced):
        await commit(engine, BatchWrite(
            group, [OffsetMove("signals", 0, 25, 30), OffsetMove("signals", 1, 7, 12)],
            logged=[(partition, hot_order_logged)],
            versions=[Checkpoint(order_id, partition, b"s", b"v", b"d", b"")],
            alerts=[store.OutgoingAlert(order_id, "A-fenced", 0, b"{}")],
        ))  # fmt: skip
    assert await stored(engine, group, 0) == {"signals": 25, "orders": 4}
    assert await stored(engine, group, 1) == {"signals": 9}
    assert (await loaded(engine, partition)).checkpoints == []
    async with engine.connect() as conn:
        assert (await conn.execute(
            select(alert_outbox.c.id).where(alert_outbox.c.order_id == order_id)
        )).all() == []  # fmt: skip

    # Two evaluators both storing a partition for the first time: the second is fenced.
    with pytest.raises(Fenced):
        await commit(engine, BatchWrite(group, [OffsetMove("signals", 1, None, 50)]))
    assert await stored(engine, group, 1) == {"signals": 9}


async def test_a_fold_keeps_the_stored_version_and_state_when_it_carries_none(
    engine: AsyncEngine,
) -> None:
    partition = 1000 + id(engine) % 1000  # a partition number no other test stores
    ids = [f"BB-store-{partition}-{n}" for n in range(3)]
    group = f"{GROUP}-fold-{partition}"
    await commit(engine, BatchWrite(group, folded=[(partition, [
        Checkpoint(order_id, partition, b"s1", f"v1 of {order_id}".encode(), b"d1", b"t1")
        for order_id in ids
    ])]))  # fmt: skip
    # state moves on; one order also gets a new version
    await commit(engine, BatchWrite(group, folded=[(partition, [
        Checkpoint(ids[0], partition, None, None, b"d2", b"t2"),  # only tracks moved
        Checkpoint(ids[1], partition, b"s2", b"v2", b"d2", b""),
    ])]))  # fmt: skip
    assert {c.order_id: c for c in (await loaded(engine, partition)).checkpoints} == {
        ids[0]: store.StoredCheckpoint(ids[0], b"s1", f"v1 of {ids[0]}".encode(), b"d2", b"t2"),
        ids[1]: store.StoredCheckpoint(ids[1], b"s2", b"v2", b"d2", b""),
        ids[2]: store.StoredCheckpoint(ids[2], b"s1", f"v1 of {ids[2]}".encode(), b"d1", b"t1"),
    }
    # State without a version for an order never stored is a bug upstream, never silent.
    with pytest.raises(RuntimeError, match="no stored row"):
        await commit(engine, BatchWrite(group, folded=[
            (partition, [Checkpoint("BB-never-stored", partition, b"s", None, b"d", b"")])
        ]))  # fmt: skip


async def test_the_change_log_replays_over_the_state_rows_and_folds_into_them(
    engine: AsyncEngine,
) -> None:
    partition = 2000 + id(engine) % 1000
    group = f"{GROUP}-log-{partition}"
    a, b = f"BB-log-{partition}-a", f"BB-log-{partition}-b"
    await commit(engine, BatchWrite(group, folded=[
        (partition, [Checkpoint(a, partition, b"sa1", b"va1", b"da1", b"ta1")])
    ]))  # a was folded before  # fmt: skip
    row_a = struct.pack(f"{len(TRACK_COLUMNS)}d", *range(len(TRACK_COLUMNS)))
    await commit(engine, BatchWrite(
        group,
        logged=[(partition, LoggedChanges(
            [a, b], [None, b"sb1"], [{0: 2}, {1: 1}], [("EB-a",), None], row_a,
        ).encoded())],  # a: tracks moved; b: new, hot
        versions=[Checkpoint(b, partition, b"sb1", b"vb1", _encode({1: 1}), b"")],
    ))  # fmt: skip
    async with engine.connect() as conn:  # only a new version went to evaluator_state itself
        rows = await conn.execute(
            select(evaluator_state.c.order_id, evaluator_state.c.delivered)
            .where(evaluator_state.c.partition == partition)
        )  # fmt: skip
        assert dict(rows.all()) == {a: b"da1", b: _encode({1: 1})}
    replayed = await loaded(engine, partition)
    assert {c.order_id: c for c in replayed.checkpoints}[a] == store.StoredCheckpoint(
        a, b"sa1", b"va1", _encode({0: 2}), _encode(TrackRows(("EB-a",), row_a))
    )
    await commit(engine, BatchWrite(
        group,
        logged=[(partition, LoggedChanges([a], [b"sa3"], [{0: 3}], [None], b"").encoded())],
        versions=[Checkpoint(a, partition, b"sa3", b"va3", _encode({0: 3}), b"")],
    ))  # amended, hot  # fmt: skip
    replayed = await loaded(engine, partition)
    expected = {
        a: store.StoredCheckpoint(a, b"sa3", b"va3", _encode({0: 3}), b""),
        b: store.StoredCheckpoint(b, b"sb1", b"vb1", _encode({1: 1}), b""),
    }
    assert {c.order_id: c for c in replayed.checkpoints} == expected
    assert (replayed.logged_batches, replayed.in_log) == (2, {a, b})

    # the fold: full checkpoints of every order the log names
    await commit(engine, BatchWrite(group, folded=[(partition, [
        Checkpoint(a, partition, b"sa3", None, b"da4", b""),
        Checkpoint(b, partition, b"sb1", None, _encode({1: 1}), b""),
    ])]))  # fmt: skip
    folded = await loaded(engine, partition)
    expected[a] = store.StoredCheckpoint(a, b"sa3", b"va3", b"da4", b"")
    assert {c.order_id: c for c in folded.checkpoints} == expected
    assert (folded.logged_batches, folded.in_log) == (0, set())
    async with engine.connect() as conn:
        log_rows = await conn.execute(
            select(evaluator_changes.c.id).where(evaluator_changes.c.partition == partition)
        )
        assert log_rows.all() == []


async def test_a_change_log_row_of_one_entry_per_order_still_replays(
    engine: AsyncEngine,
) -> None:
    # The format before LoggedChanges: a row left unfolded by an evaluator of that time.
    partition = 4000 + id(engine) % 1000
    group = f"{GROUP}-old-log-{partition}"
    a = f"BB-old-log-{partition}"
    await commit(engine, BatchWrite(group, folded=[
        (partition, [Checkpoint(a, partition, b"sa1", b"va1", b"da1", b"ta1")])
    ]))  # fmt: skip
    async with engine.begin() as conn:
        await conn.execute(evaluator_changes.insert().values(
            partition=partition, changes=_encode([(a, None, b"da2", b"ta2")]),
        ))  # fmt: skip
    replayed = await loaded(engine, partition)
    assert replayed.checkpoints == [store.StoredCheckpoint(a, b"sa1", b"va1", b"da2", b"ta2")]
    assert (replayed.logged_batches, replayed.in_log) == (1, {a})


async def test_alerts_enter_the_outbox_in_order_and_are_marked_published_later(
    engine: AsyncEngine,
) -> None:
    group = f"{GROUP}-alerts-{id(engine)}"
    alerts = [
        store.OutgoingAlert(f"BB-alerts-{id(engine)}-{n % 3}", f"A-{id(engine)}-{n}", n, b"%d" % n)
        for n in range(7)
    ]
    ids = await commit(engine, BatchWrite(group, alerts=alerts))
    assert len(ids) == len(alerts)

    async def outbox() -> dict[int, tuple[str, int, bytes, bool]]:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(alert_outbox.c.id, alert_outbox.c.alert_id, alert_outbox.c.seq,
                       alert_outbox.c.payload, alert_outbox.c.published_at.is_not(None))
                .where(alert_outbox.c.id.in_(ids))
            )  # fmt: skip
            return {row[0]: (row[1], row[2], bytes(row[3]), row[4]) for row in rows}

    # each returned id is the row of the alert in the same position
    assert await outbox() == {
        outbox_id: (alert.alert_id, alert.seq, alert.payload, False)
        for outbox_id, alert in zip(ids, alerts, strict=True)
    }
    await commit(engine, BatchWrite(group, published=ids[:4]))  # a write of marks alone
    marked = {outbox_id: row[3] for outbox_id, row in (await outbox()).items()}
    assert marked == {outbox_id: n < 4 for n, outbox_id in enumerate(ids)}
    await commit(engine, BatchWrite(group, published=ids))  # again for four: no harm
    assert all(row[3] for row in (await outbox()).values())


async def _vacuums(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(text(
            "SELECT relname, vacuum_count FROM pg_stat_user_tables "
            "WHERE relname IN ('evaluator_changes', 'consumer_offsets')"
        ))  # fmt: skip
        return {name: int(count) for name, count in rows.all()}


async def test_the_evaluator_vacuums_the_tables_each_batch_churns_until_it_stops(
    engine: AsyncEngine, migrated: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every batch replaces rows of the change log and of the offsets, faster than autovacuum
    (once a minute) clears them; the evaluator vacuums both itself, beside its batches, and
    stops doing so when it stops."""
    monkeypatch.setattr(evaluator_module, "VACUUM_EVERY_S", 0.05)
    evaluator = BreachEvaluator(migrated, engine, Metrics("test"), RuleConfig())
    before = await _vacuums(engine)
    stop = asyncio.Event()
    vacuuming = asyncio.create_task(evaluator._vacuum_until(stop))

    async def vacuumed_both() -> bool:
        now = await _vacuums(engine)
        return all(now.get(name, 0) > before.get(name, 0) for name in now) and len(now) == 2

    assert await wait_for(vacuumed_both, timeout_s=20)
    stop.set()
    await asyncio.wait_for(vacuuming, timeout=5)  # it ends by itself once stopped
