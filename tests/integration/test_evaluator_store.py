"""The evaluator's offsets in Postgres move by compare-and-set: an evaluator that lost its
partition to another cannot overwrite the new owner's progress (real PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.adapters.database import make_engine
from services.adapters.settings import Settings
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
