"""A real PostgreSQL round trip through the alembic migrations."""

from __future__ import annotations

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import insert, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert

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
