"""Shared fixtures. Integration fixtures talk to the real Kafka and PostgreSQL of `deploy/`
(`eval "$(breachwatch infra up)"`); they fail, never skip, when those are down."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest

from deploy.scratch import scratch_database
from services.adapters.settings import Settings

RUN_ID = uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
async def test_database_url(base_settings: Settings) -> AsyncIterator[str]:
    """A database of its own for this test run, dropped at the end."""
    async with scratch_database(base_settings.database_url, f"bw_test_{RUN_ID}") as url:
        yield url


@pytest.fixture(scope="session")
def settings(base_settings: Settings, test_database_url: str) -> Settings:
    """Settings pointing at this run's own database and its own topic prefix."""
    return base_settings.model_copy(
        update={
            "database_url": test_database_url,
            "topic_prefix": f"t{RUN_ID}.",
            "cjib_orders_topic": f"t{RUN_ID}.cjib.protection-orders.v1",
            "partitions": int(os.environ.get("BW_TEST_PARTITIONS", "4")),
        }
    )
