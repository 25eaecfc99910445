"""The same simulator run on the embedded stack of the demo (Tansu and pgserver's PostgreSQL)
and on the real Apache Kafka and PostgreSQL of CI gives the same set of alerts: the demo is
the same code, selected by settings."""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime
from typing import Any

import pytest

from deploy.demo import demo_settings
from deploy.embedded import embedded_stack
from services.adapters.database import migrate
from services.adapters.kafka import create_topics
from services.adapters.settings import RuleTimings, Settings
from simulator.drive import drive
from simulator.script import RULES, plan
from tests.support.http import auth
from tests.support.kafka import wait_for
from tests.support.pipeline import routed, running_pipeline
from tests.support.scenario import environment

pytestmark = pytest.mark.integration
SERVICES = ("ingest", "router", "evaluator", "dispatcher")


async def _alerts_of_a_run(settings: Settings) -> set[tuple[tuple[str, str], int]]:
    """((case, rule), episodes) of a 45 s scripted run, case being the order id without the
    run's tag."""
    settings = settings.model_copy(update={"rules": RuleTimings(signal_lost_after_s=6)})
    async with running_pipeline(settings, services=SERVICES) as pipeline:
        tag = f"p{time.time_ns() % 10**9}-"
        scripted = plan(len(RULES), seed=23, start=time.time() + 3, duration_s=45,
                        interval_s=2, tag=tag)  # fmt: skip
        await drive(settings, scripted, orders_known=routed(pipeline, scripted))
        wanted = {(e.order_id, e.rule) for e in scripted.expected}

        async def settled() -> list[dict[str, Any]]:
            answer = await pipeline.http.get("/v1/alerts?limit=1000",
                                             headers=auth(settings, "admin"))  # fmt: skip
            alerts = [
                a for a in answer.json()["alerts"] if a["order_id"].startswith(f"BB-SIM-{tag}")
            ]
            return alerts if wanted <= {(a["order_id"], a["rule"]) for a in alerts} else []

        alerts = await wait_for(settled, timeout_s=60)
        assert alerts, "the scripted breaches never all came out"
        # Every episode that began while the monitors were sending (the ones going dark when
        # the run ends depend on when the run is read, not on what the system decides).
        run_ended = scripted.start + scripted.duration_s - 4
        episodes = Counter(
            (a["order_id"].removeprefix(f"BB-SIM-{tag}"), a["rule"])
            for a in alerts
            if datetime.fromisoformat(a["episode_started_at"]).timestamp() < run_ended
        )
        return set(episodes.items())


@pytest.mark.timeout(400)
async def test_the_embedded_stack_raises_the_same_alerts_as_apache_kafka_and_postgres(
    migrated: Settings,
) -> None:
    async with environment(migrated) as own:  # groups of its own, as on the embedded stack
        real = await _alerts_of_a_run(own)
    with embedded_stack() as stack:
        embedded = demo_settings(migrated, stack.kafka_bootstrap, stack.database_url)
        await create_topics(embedded)
        await migrate(embedded.database_url)
        on_embedded = await _alerts_of_a_run(embedded)
    assert {rule for (_, rule), _ in real} == set(RULES)
    assert on_embedded == real
