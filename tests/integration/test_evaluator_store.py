"""The evaluator's offsets in Postgres move by compare-and-set: an evaluator that lost its
partition to another cannot overwrite the new owner's progress (real PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.adapters.database import make_engine
from services.adapters.settings import Settings
from services.adapters.tables import evaluator_state
from services.breach_evaluator import store
from services.breach_evaluator.store import Fenced, OffsetMove

pytestmark = pytest.mark.integration

GROUP = "test-fencing"


@pytest.fixture
async def engine(migrated: Settings) -> AsyncIterator[AsyncEngine]:
    made = make_engine(migrated)
    yield made
    await made.dispose()


async def stored(engine: AsyncEngine, group: str, partition: int) -> dict[str, int]:
    async with engine.connect() as conn:
        return await store.load_offsets(conn, group, ["signals", "orders"], partition)


async def test_offsets_move_together_and_a_stale_owner_is_fenced(engine: AsyncEngine) -> None:
    group = f"{GROUP}-{id(engine)}"
    async with engine.begin() as conn:  # first store: inserts
        await store.advance_offsets(conn, group, [
            OffsetMove("signals", 0, None, 10), OffsetMove("orders", 0, None, 3),
            OffsetMove("signals", 1, None, 7),
        ])  # fmt: skip
    async with engine.begin() as conn:  # the owner moves on: one statement, all or nothing
        await store.advance_offsets(conn, group, [
            OffsetMove("signals", 0, 10, 25), OffsetMove("orders", 0, 3, 4),
            OffsetMove("signals", 1, 7, 9),
        ])  # fmt: skip
    assert await stored(engine, group, 0) == {"signals": 25, "orders": 4}

    # A stale owner still believes partition 1 is at 7: its whole batch is refused.
    with pytest.raises(Fenced):
        async with engine.begin() as conn:
            await store.advance_offsets(conn, group, [
                OffsetMove("signals", 0, 25, 30), OffsetMove("signals", 1, 7, 12),
            ])  # fmt: skip
    assert await stored(engine, group, 0) == {"signals": 25, "orders": 4}
    assert await stored(engine, group, 1) == {"signals": 9}

    # Two evaluators both storing a partition for the first time: the second is fenced.
    with pytest.raises(Fenced):
        async with engine.begin() as conn:
            await store.advance_offsets(conn, group, [OffsetMove("signals", 1, None, 50)])
    assert await stored(engine, group, 1) == {"signals": 9}


async def test_a_checkpoint_keeps_the_stored_version_and_state_when_it_carries_none(
    engine: AsyncEngine,
) -> None:
    partition = 1000 + id(engine) % 1000  # a partition number no other test stores
    ids = [f"BB-store-{partition}-{n}" for n in range(3)]
    async with engine.begin() as conn:
        await store.save_checkpoints(conn, [
            store.Checkpoint(order_id, partition, b"s1", f"v1 of {order_id}".encode(), b"d1", b"t1")
            for order_id in ids
        ])  # fmt: skip
    async with engine.begin() as conn:  # state moves on; one order also gets a new version
        await store.save_checkpoints(conn, [
            store.Checkpoint(ids[0], partition, None, None, b"d2", b"t2"),  # only tracks moved
            store.Checkpoint(ids[1], partition, b"s2", b"v2", b"d2", b""),
        ])  # fmt: skip
    async with engine.connect() as conn:
        loaded = {
            c.order_id: c for c in (await store.load_checkpoints(conn, partition)).checkpoints
        }
    assert loaded == {
        ids[0]: store.StoredCheckpoint(ids[0], b"s1", f"v1 of {ids[0]}".encode(), b"d2", b"t2"),
        ids[1]: store.StoredCheckpoint(ids[1], b"s2", b"v2", b"d2", b""),
        ids[2]: store.StoredCheckpoint(ids[2], b"s1", f"v1 of {ids[2]}".encode(), b"d1", b"t1"),
    }
    # State without a version for an order never stored is a bug upstream, never silent.
    with pytest.raises(RuntimeError, match="no stored row"):
        async with engine.begin() as conn:
            await store.save_checkpoints(
                conn, [store.Checkpoint("BB-never-stored", partition, b"s", None, b"d", b"")]
            )


async def test_the_change_log_replays_over_the_state_rows_and_folds_into_them(
    engine: AsyncEngine,
) -> None:
    partition = 2000 + id(engine) % 1000
    a, b = f"BB-log-{partition}-a", f"BB-log-{partition}-b"
    async with engine.begin() as conn:  # a was folded before; b is new in this batch
        await store.save_checkpoints(conn, [store.Checkpoint(a, partition, b"sa1", b"va1",
                                                             b"da1", b"ta1")])  # fmt: skip
        await store.log_changes(conn, [(partition, [
            store.Checkpoint(a, partition, None, None, b"da2", b"ta2"),  # tracks moved
            store.Checkpoint(b, partition, b"sb1", b"vb1", b"db1", b""),  # new
        ])])  # fmt: skip
    async with engine.connect() as conn:  # only a new version went to evaluator_state itself
        rows = await conn.execute(
            select(evaluator_state.c.order_id, evaluator_state.c.delivered)
            .where(evaluator_state.c.partition == partition)
        )  # fmt: skip
        assert dict(rows.all()) == {a: b"da1", b: b"db1"}
    async with engine.begin() as conn:
        await store.log_changes(conn, [(partition, [
            store.Checkpoint(a, partition, b"sa3", b"va3", b"da3", b""),  # amended, hot
        ])])  # fmt: skip
    async with engine.connect() as conn:
        loaded = await store.load_checkpoints(conn, partition)
    expected = {
        a: store.StoredCheckpoint(a, b"sa3", b"va3", b"da3", b""),
        b: store.StoredCheckpoint(b, b"sb1", b"vb1", b"db1", b""),
    }
    assert {c.order_id: c for c in loaded.checkpoints} == expected
    assert (loaded.logged_batches, loaded.in_log) == (2, {a, b})

    async with engine.begin() as conn:  # the fold: full checkpoints of every order the log names
        await store.fold_changes(conn, partition, [
            store.Checkpoint(a, partition, b"sa3", None, b"da4", b""),
            store.Checkpoint(b, partition, b"sb1", None, b"db1", b""),
        ])  # fmt: skip
    async with engine.connect() as conn:
        folded = await store.load_checkpoints(conn, partition)
    expected[a] = store.StoredCheckpoint(a, b"sa3", b"va3", b"da4", b"")
    assert {c.order_id: c for c in folded.checkpoints} == expected
    assert (folded.logged_batches, folded.in_log) == (0, set())
