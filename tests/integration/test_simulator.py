"""The simulator against the real stack: orders onto the CJIB topic, monitors and victims'
devices in real time onto Kafka, every service running; the control room's alert API then
shows every scripted breach, each for its own order."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest

from services.adapters.settings import RuleTimings, Settings
from simulator.drive import drive
from simulator.script import RULES, plan
from tests.support.http import auth
from tests.support.kafka import wait_for
from tests.support.pipeline import routed, running_pipeline
from tests.support.scenario import environment

pytestmark = pytest.mark.integration


@pytest.mark.timeout(300)
async def test_a_simulated_run_raises_every_scripted_breach_through_the_whole_system(
    migrated: Settings,
) -> None:
    # signal lost after 6 s: the dark monitor is missed within the run, and a single dropped
    # fix (a 4 s gap at a fix every 2 s) is not taken for it
    # A database, topics and consumer groups of its own, as the other whole-pipeline runs: the
    # session's groups have members from earlier tests coming and going.
    services = ("ingest", "router", "evaluator", "dispatcher")
    async with (
        environment(migrated) as own,
        running_pipeline(
            own.model_copy(update={"rules": RuleTimings(signal_lost_after_s=6)}), services=services
        ) as pipeline,
    ):
        settings = pipeline.settings
        scripted = plan(len(RULES), seed=11, start=time.time() + 3, duration_s=45, interval_s=2,
                        tag=f"t{int(time.time()) % 100_000}-")  # fmt: skip
        summary = await drive(settings, scripted, orders_known=routed(pipeline, scripted))
        assert summary.orders == len(RULES)
        assert summary.behind_s < 1.0, summary.lines()
        wanted = {(e.order_id, e.rule) for e in scripted.expected}

        async def raised() -> list[dict[str, Any]]:
            answer = await pipeline.http.get("/v1/alerts?limit=1000",
                                             headers=auth(settings, "admin"))  # fmt: skip
            alerts: list[dict[str, Any]] = answer.json()["alerts"]
            return alerts if wanted <= {(a["order_id"], a["rule"]) for a in alerts} else []

        alerts = await wait_for(raised, timeout_s=60)
        got = {(a["order_id"], a["rule"]) for a in alerts}
        assert wanted <= got, f"missing: {sorted(wanted - got)}"
        # Nothing unscripted, but for the monitors going dark when the run ends.
        ours = {order_id for order_id, _ in wanted}
        run_ended = scripted.start + scripted.duration_s - 2 * 2  # two fixes before the end
        unscripted = [a for a in alerts if a["order_id"] in ours
                      and (a["order_id"], a["rule"]) not in wanted]  # fmt: skip
        for extra in unscripted:
            started = datetime.fromisoformat(extra["episode_started_at"]).timestamp()
            assert extra["rule"] == "signal_lost" and started >= run_ended, extra
