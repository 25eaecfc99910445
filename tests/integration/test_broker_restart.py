"""The Kafka broker killed (SIGKILL, as a crash) and started again while fix_router and the
evaluator are busy with a stream: they, and the alert relay, carry on by themselves, and the
alerts equal those of a run without the crash (after deduplication by alert id and seq)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from deploy import infra
from services.adapters.settings import Settings
from tests.support.scenario import (
    device_streams,
    one_device_rules,
    run_router_and_evaluator,
    scenario,
)

pytestmark = pytest.mark.integration

DOWN_S = 3.0


def _our_kafka(settings: Settings) -> infra.InfraConfig:
    """The test stops the broker, so it must be the one `deploy/infra.py` runs."""
    cfg = infra.InfraConfig.from_env()
    port = int(settings.kafka_bootstrap.rsplit(":", 1)[1])
    assert port == cfg.kafka_port, f"broker on {port} is not the deploy/ broker {cfg.kafka_port}"
    return cfg


@pytest.mark.timeout(900)
async def test_services_recover_from_a_broker_crash_untouched(migrated: Settings) -> None:
    cfg = _our_kafka(migrated)
    orders, signals = scenario(seed=31, orders_n=20, signals_n=3000)
    positions, _ = device_streams(signals)  # one device's rules: see one_device_rules
    restarted: list[float] = []

    async def restart_broker(app: Any) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.to_thread(infra.kafka_down, cfg, hard=True)
        began = loop.time()
        await asyncio.sleep(DOWN_S)
        await asyncio.to_thread(infra.kafka_up, cfg)
        restarted.append(loop.time() - began)

    clean = await run_router_and_evaluator(migrated, orders, positions)
    disturbed = await run_router_and_evaluator(migrated, orders, positions, midway=restart_broker)
    assert restarted, "the broker was never restarted"
    expected = one_device_rules(clean.alerts)
    assert len(expected) > 20, "the scenario raised too few alerts to prove anything"
    got = one_device_rules(disturbed.alerts)
    missed, extra = expected.keys() - got.keys(), got.keys() - expected.keys()
    assert not missed and not extra, f"missed {len(missed)}, extra {len(extra)}"
    assert got == expected
    assert clean.letters == disturbed.letters == []
