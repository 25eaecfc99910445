"""`bench pipeline` judges its own figures against issue #6's targets, and only a run of the
targets' size: a small run's figures say nothing of them."""

from __future__ import annotations

from typing import Any

import pytest

from bench.pipeline import (
    CATCH_UP,
    P50,
    P99,
    RESIDENT,
    TARGET_BACKLOG,
    TARGET_ORDERS,
    TARGET_RATE,
    Target,
    against_targets,
)


def _run(
    *,
    orders: int = TARGET_ORDERS,
    backlog: int = TARGET_BACKLOG,
    fixes_per_s: float = 150_000,
    rss: tuple[int, int] = (900, 880),
    levels: tuple[tuple[int, float, float], ...] = ((1000, 30.0, 90.0), (TARGET_RATE, 7.0, 12.0)),
) -> dict[str, Any]:
    """The part of `measure`'s results the judgement reads; levels are (rate, p50, p99)."""
    return {
        "orders": orders,
        "catch_up": {
            "backlog": backlog,
            "fixes_per_s": fixes_per_s,
            "evaluator_rss_mib": rss[0],
            "evaluator_rss_mib_after_load": rss[1],
        },
        "steady": [{"rate": rate, "p50_ms": p50, "p99_ms": p99} for rate, p50, p99 in levels],
    }


def _verdicts(results: dict[str, Any]) -> dict[str, bool | None]:
    return {judged["target"]: judged["met"] for judged in against_targets(results)}


def test_a_full_size_run_within_every_limit_meets_them_all_and_reads_the_5k_level() -> None:
    # The 1k level's figures would fail both latency targets: only the 5k level counts.
    judged = against_targets(_run())
    assert [(j["target"], j["measured"], j["met"]) for j in judged] == [
        (CATCH_UP.name, 150_000, True),
        (P50.name, 7.0, True),
        (P99.name, 12.0, True),
        (RESIDENT.name, 900, True),
    ]


@pytest.mark.parametrize(
    ("results", "target", "met"),
    [
        (_run(fixes_per_s=CATCH_UP.limit), CATCH_UP, True),
        (_run(fixes_per_s=CATCH_UP.limit - 1), CATCH_UP, False),
        (_run(levels=((TARGET_RATE, P50.limit, 12.0),)), P50, True),
        (_run(levels=((TARGET_RATE, P50.limit + 0.1, 12.0),)), P50, False),
        (_run(levels=((TARGET_RATE, 7.0, P99.limit),)), P99, True),
        (_run(levels=((TARGET_RATE, 7.0, P99.limit + 0.1),)), P99, False),
        (_run(rss=(1024, 1000)), RESIDENT, True),
        # the reading after the steady load counts as much as the one after the catch-up
        (_run(rss=(1000, 1025)), RESIDENT, False),
    ],
)
def test_each_limit_holds_at_its_value_and_fails_just_past_it(
    results: dict[str, Any], target: Target, met: bool
) -> None:
    assert _verdicts(results)[target.name] is met


def test_a_run_smaller_than_the_targets_is_judged_on_none_of_them() -> None:
    small = _run(orders=400, backlog=4000, fixes_per_s=1.0, rss=(5000, 5000),
                 levels=((TARGET_RATE, 99.0, 999.0),))  # fmt: skip
    assert set(_verdicts(small).values()) == {None}
    assert all(judged["measured"] is None for judged in against_targets(small))


def test_a_short_backlog_leaves_catch_up_unjudged_and_no_5k_level_the_latencies() -> None:
    verdicts = _verdicts(_run(backlog=TARGET_BACKLOG - 1, levels=((1000, 5.0, 9.0),)))
    assert verdicts == {CATCH_UP.name: None, P50.name: None, P99.name: None, RESIDENT.name: True}
