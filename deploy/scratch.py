"""Throwaway environments on the real infrastructure: a database of its own and a topic prefix
of its own, for a test run or a benchmark, removed afterwards."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient

from services.adapters.kafka import create_topics, topic_catalogue
from services.adapters.settings import Settings


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


def asyncpg_dsn(url: str) -> str:
    """The SQLAlchemy URL as a plain libpq DSN, for asyncpg on its own."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@asynccontextmanager
async def scratch_database(base_url: str, name: str | None = None) -> AsyncIterator[str]:
    """A new, empty database next to `base_url`'s; yields its URL and drops it afterwards."""
    name = name or f"bw_scratch_{uuid.uuid4().hex[:8]}"
    admin_dsn = asyncpg_dsn(with_database(base_url, "postgres"))
    conn = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield with_database(base_url, name)
    finally:
        conn = await asyncpg.connect(admin_dsn, timeout=10)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@asynccontextmanager
async def scratch_topics(settings: Settings) -> AsyncIterator[Settings]:
    """Every topic of the catalogue under a prefix of its own; deleted afterwards."""
    tag = uuid.uuid4().hex[:8]
    prefix = f"s{tag}."
    scoped = settings.model_copy(
        update={"topic_prefix": prefix, "cjib_orders_topic": f"{prefix}cjib.protection-orders.v1"}
    )
    await create_topics(scoped)
    try:
        yield scoped
    finally:
        await delete_topics(scoped)


async def delete_topics(settings: Settings) -> None:
    """Every topic of the catalogue under `settings`' prefix. Test runs remove theirs: a broker
    carrying thousands of stale partitions takes half a minute to restart."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        names = [spec.name for spec in topic_catalogue(settings) if spec.name in existing]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()


def environment_of(settings: Settings) -> dict[str, str]:
    """The `BW_*` variables that make a child process (`breachwatch serve ...`) use `settings`."""
    return {
        "BW_DATABASE_URL": settings.database_url,
        "BW_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "BW_TOPIC_PREFIX": settings.topic_prefix,
        "BW_CJIB_ORDERS_TOPIC": settings.cjib_orders_topic,
        "BW_PARTITIONS": str(settings.partitions),
        "BW_HTTP_PORT": str(settings.http_port),
        "BW_LOG_LEVEL": settings.log_level,
        "BW_CONSUMER_SESSION_TIMEOUT_MS": str(settings.consumer_session_timeout_ms),
        "BW_JWT_SECRET": settings.jwt_secret.get_secret_value(),
    }
