from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from deploy.scratch import delete_topics
from services.adapters.database import migrate
from services.adapters.kafka import create_topics
from services.adapters.settings import Settings
from services.http import create_app
from tests.support.scenario import environment

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
async def topics(settings: Settings) -> AsyncIterator[Settings]:
    """This run's topics, created on the real broker and deleted after the run."""
    await create_topics(settings)
    yield settings
    await delete_topics(settings)


@pytest.fixture(scope="session")
async def migrated(settings: Settings, topics: Settings) -> Settings:
    await migrate(settings.database_url)
    return settings


@pytest.fixture(scope="session")
async def client(migrated: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(migrated)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bw") as http,
    ):
        yield http


@pytest.fixture
async def own(migrated: Settings) -> AsyncIterator[Settings]:
    """A database and topics of the test's own, with a short consumer session."""
    async with environment(migrated) as settings:
        yield settings
