from __future__ import annotations

import pytest

from services.adapters.kafka import create_topics
from services.adapters.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
async def topics(settings: Settings) -> Settings:
    """This run's topics, created on the real broker."""
    await create_topics(settings)
    return settings
