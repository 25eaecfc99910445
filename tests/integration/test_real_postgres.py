"""A real PostgreSQL round trip through the alembic migrations."""

from __future__ import annotations

import asyncpg
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import insert, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from deploy.scratch import asyncpg_dsn
from services.adapters.database import (
    alembic_config,
    downgrade,
    make_engine,
    make_sessionmaker,
    migrate,
    transaction,
)
from services.adapters.settings import Settings
from services.adapters.tables import consumer_offsets, evaluator_state
from services.breach_evaluator import store

pytestmark = pytest.mark.integration


async def test_migrations_round_trip_and_upsert(settings: Settings) -> None:
    await downgrade(settings.database_url, "base")
    await migrate(settings.database_url, "head")
    engine = make_engine(settings, pool_size=2)
    sessions = make_sessionmaker(engine)
    try:
        async with transaction(sessions) as session:
            version = await session.scalar(text("SELECT version_num FROM alembic_version"))
            head = ScriptDirectory.from_config(alembic_config(settings.database_url))
            assert version == head.get_current_head()
            key = {"consumer_group": "g", "topic": "t", "partition": 3}
            for offset in (10, 42):
                stmt = pg_insert(consumer_offsets).values(**key, next_offset=offset)
                await session.execute(
                    stmt.on_conflict_do_update(
                        index_elements=list(key), set_={"next_offset": stmt.excluded.next_offset}
                    )
                )
            await session.execute(
                insert(evaluator_state).values(
                    order_id="BB-1", partition=3, state=b"\x00\x01", order_event=b"{}"
                )
            )
        async with transaction(sessions) as session:
            assert await session.scalar(select(consumer_offsets.c.next_offset)) == 42
            assert await session.scalar(select(evaluator_state.c.state)) == b"\x00\x01"
        # Down to nothing and back up: the tables are gone, then empty again.
        await downgrade(settings.database_url, "base")
        async with transaction(sessions) as session:
            missing = await session.scalar(text("SELECT to_regclass('consumer_offsets')"))
            assert missing is None
        await migrate(settings.database_url, "head")
        async with transaction(sessions) as session:
            assert await session.scalar(select(consumer_offsets.c.next_offset)) is None
    finally:
        await engine.dispose()


async def _columns(session: AsyncSession, table: str) -> list[str]:
    rows = await session.execute(
        text(
            "SELECT attname FROM pg_attribute WHERE attrelid = CAST(:t AS regclass) "
            "AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
        ),
        {"t": table},
    )
    return [name for (name,) in rows]


async def test_a_checkpoint_of_tracks_leaves_the_order_event_out_of_the_wal(
    settings: Settings,
) -> None:
    """0010 puts evaluator_state's columns in the order tables.py gives, keeping its rows, both
    ways; afterwards an update of an order's tracks logs far less than the order's event (an
    update on its page logs only what lies between the prefix and suffix it shares)."""
    await downgrade(settings.database_url, "0009")
    engine = make_engine(settings, pool_size=2)
    sessions = make_sessionmaker(engine)
    event = bytes(range(256)) * 4  # 1 kB, as an order's event is
    row = {"order_id": "BB-1", "partition": 3, "state": b"\x01" * 200, "order_event": event,
           "delivered": b"\x02", "tracks": b"\x03" * 200}  # fmt: skip
    try:
        async with transaction(sessions) as session:
            await session.execute(insert(evaluator_state).values(**row))
        await migrate(settings.database_url, "head")
        async with transaction(sessions) as session:
            assert await _columns(session, "evaluator_state") == list(evaluator_state.c.keys())
            kept = (await session.execute(select(*(evaluator_state.c[k] for k in row)))).one()
            assert kept._asdict() == row
        wal = []
        for round_ in range(2):  # the first round takes a full-page image, if one is due
            async with transaction(sessions) as session:
                before = await session.scalar(text("SELECT pg_current_wal_insert_lsn()"))
            for n in range(20):
                async with transaction(sessions) as session:
                    await session.execute(
                        evaluator_state.update()
                        .where(evaluator_state.c.order_id == "BB-1")
                        .values(tracks=bytes([round_, n]) * 100, updated_at=text("now()"))
                    )
            async with transaction(sessions) as session:
                wal.append(
                    await session.scalar(
                        text("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), :b)"),
                        {"b": before},
                    )
                )
        assert wal[1] < 20 * len(event) / 2, wal
        await downgrade(settings.database_url, "0009")
        async with transaction(sessions) as session:
            assert await _columns(session, "evaluator_state") == [
                "order_id", "partition", "state", "updated_at", "order_event", "delivered",
                "tracks",
            ]  # fmt: skip
            assert (await session.execute(select(evaluator_state.c.order_event))).scalar() == event
    finally:
        await migrate(settings.database_url, "head")
        async with transaction(sessions) as session:  # the evaluators of later tests load it
            await session.execute(
                evaluator_state.delete().where(evaluator_state.c.order_id == "BB-1")
            )
        await engine.dispose()


async def test_a_catch_up_sized_fold_runs_in_memory(settings: Settings) -> None:
    """A fold of 20k orders (~6 MB of arrays) through evaluator_commit_batch writes no
    temporary file: with the default 4 MB of work_mem its arrays spilled (0011)."""
    count = 20_000
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        await conn.execute(
            "INSERT INTO evaluator_state (order_id, partition, order_event, state) "
            "SELECT 'FOLD-' || n, 0, '\\x00'::bytea, '\\x00'::bytea "
            "FROM generate_series(1, $1) AS n",
            count,
        )

        async def temp_bytes() -> int:
            await conn.execute("SELECT pg_stat_force_next_flush()")
            await conn.execute("SELECT pg_stat_clear_snapshot()")
            written: int = await conn.fetchval(
                "SELECT temp_bytes FROM pg_stat_database WHERE datname = current_database()"
            )
            return written

        fold = [
            store.Checkpoint(f"FOLD-{n}", 0, None, None, b"\x81\x00\x01", bytes(300))
            for n in range(1, count + 1)
        ]
        before = await temp_bytes()
        await store.commit_batch(conn, store.BatchWrite("test-fold", folded=[(0, fold)]))
        assert await temp_bytes() == before
        stored = await conn.fetchval(
            "SELECT count(*) FROM evaluator_state "
            "WHERE order_id LIKE 'FOLD-%' AND length(tracks) = 300"
        )
        assert stored == count
    finally:
        await conn.execute("DELETE FROM evaluator_state WHERE order_id LIKE 'FOLD-%'")
        await conn.close()


async def test_analyze_of_evaluator_state_samples_only_its_keys(migrated: Settings) -> None:
    """Autovacuum analyzes evaluator_state at every visit under live traffic. Its statistics
    cover the two keys, from a sample a tenth of the default (0012); the opaque columns are
    left as they were (statistics from before 0012 stay, unused). A later migration that
    rebuilds the table (as 0010 did) loses the targets: this fails then."""
    conn = await asyncpg.connect(asyncpg_dsn(migrated.database_url))
    keys = ("order_id", "partition")

    async def statistics() -> tuple[dict[str, asyncpg.Record], dict[str, tuple[object, ...]]]:
        """(the keys' rows of pg_stats, every other column's row as a tuple)"""
        rows = await conn.fetch(
            "SELECT attname, n_distinct, avg_width, "
            "cardinality(histogram_bounds::text::text[]) AS bounds "
            "FROM pg_stats WHERE tablename = 'evaluator_state'"
        )
        by_column = {row["attname"]: row for row in rows}
        opaque = {name: tuple(row) for name, row in by_column.items() if name not in keys}
        return {name: by_column[name] for name in keys if name in by_column}, opaque

    try:
        _, opaque_before = await statistics()
        await conn.execute(
            "INSERT INTO evaluator_state (order_id, partition, order_event, state, tracks) "
            "SELECT 'STATS-' || n, n % 12, sha256(int4send(n)), sha256(int4send(-n)), "
            "sha256(int4send(n + 1)) FROM generate_series(1, 5000) AS n"
        )
        await conn.execute("ANALYZE evaluator_state")
        by_key, opaque_after = await statistics()
        assert by_key["partition"]["n_distinct"] == 12
        # a histogram has at most one bound more than the column's target
        assert 2 <= by_key["order_id"]["bounds"] <= 11
        assert opaque_after == opaque_before
    finally:
        await conn.execute("DELETE FROM evaluator_state WHERE order_id LIKE 'STATS-%'")
        await conn.close()
