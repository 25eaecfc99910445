"""The one database adapter: the async engine, sessions, and migrations (alembic)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import TypeAlias

import asyncpg
from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from services.adapters.settings import Settings

DriverConnection: TypeAlias = asyncpg.Connection


def make_engine(settings: Settings, *, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(
        settings.database_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    async with sessions() as session, session.begin():
        yield session


@asynccontextmanager
async def driver_connection(engine: AsyncEngine) -> AsyncIterator[DriverConnection]:
    """A pooled connection's own asyncpg connection, held for as long as the caller runs: for
    a hot path that calls one prepared statement per unit of work, with no SQLAlchemy compile,
    no transaction block and no pre-ping around each call. When the connection breaks, the call
    fails and the caller starts over with a new one."""
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        yield raw.driver_connection


def alembic_config(database_url: str) -> Config:
    migrations = Path(str(resources.files("services") / "migrations"))
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def migrate_sync(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade_sync(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


async def migrate(database_url: str, revision: str = "head") -> None:
    """Upgrade the schema to `revision`; alembic's env runs its own event loop, so in a thread."""
    await asyncio.to_thread(migrate_sync, database_url, revision)


async def downgrade(database_url: str, revision: str) -> None:
    await asyncio.to_thread(downgrade_sync, database_url, revision)
