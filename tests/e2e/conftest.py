"""End-to-end tests (a real browser) use the integration tests' real Kafka and Postgres."""

from tests.integration.conftest import migrated, topics

__all__ = ["migrated", "topics"]
