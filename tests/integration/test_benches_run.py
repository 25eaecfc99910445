"""The benchmarks run end to end on a small size and report every figure (not timed: the
figures themselves are for bench/, never asserted here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import core, ingest, pipeline

pytestmark = pytest.mark.integration


def test_bench_core_reports_engine_naive_and_postgis(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plot_to = tmp_path / "core.png"
    results = core.main([200], n_fixes=3000, postgis_fixes=50, as_json=True, plot_to=plot_to)
    assert plot_to.read_bytes().startswith(b"\x89PNG")
    (row,) = results["rows"]
    assert row["orders"] == 200 and row["fixes"] == 3000
    assert row["engine_fixes_per_s"] > 0 and row["naive_fixes_per_s"] > 0
    assert row["ratio_vs_naive"] > 0
    # PostGIS is optional on a machine; when missing the row says why instead of a figure.
    assert "ratio_vs_postgis" in row or row["postgis"].startswith("skipped: ")
    assert '"rows"' in capsys.readouterr().out


def test_bench_ingest_reports_throughput_latency_and_the_healthz_floor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Runs `breachwatch serve ingest` as a process on a scratch database and scratch topics.
    plot_to = tmp_path / "ingest.png"
    results = ingest.main([2], per_level=60, as_json=True, plot_to=plot_to)
    assert plot_to.read_bytes().startswith(b"\x89PNG")
    (row,) = results["rows"]
    assert (row["clients"], row["orders"]) == (2, 60)
    assert row["orders_per_s"] > 0 and row["healthz_per_s"] > 0
    assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"]
    assert row["relay_drained_after_s"] >= 0
    assert '"rows"' in capsys.readouterr().out


def test_bench_pipeline_reports_catch_up_latency_cpu_memory_and_a_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `breachwatch serve evaluator` and `serve router` as processes, scratch database and topics.
    plot_to = tmp_path / "latency.png"
    results = pipeline.main(
        orders=400, backlog=4000, rates=[200], seconds=2.0, plot_to=plot_to, as_json=True
    )
    assert results["first_start"]["orders"] == 400 and results["first_start"]["orders_per_s"] > 0
    caught = results["catch_up"]
    assert caught["backlog"] == 4000 and caught["fixes_per_s"] > 0
    assert caught["bare_consumer_per_s"] > 0 and caught["evaluator_rss_mib"] > 0
    (row,) = results["steady"]
    assert row["rate"] == 200 and row["samples"] > 0
    assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"]
    # Where the latency went, from the alert's detected_at and its record's timestamp; the
    # record's millisecond timestamp may round below detected_at by under a millisecond.
    stages = row["stages_p50_ms"]
    assert list(stages) == ["to detection", "detection to send", "send to read"]
    assert all(ms > -1.0 for ms in stages.values()) and stages["to detection"] > 0
    # The slowest 1% by stage: the stages of a sample add up to its whole path, so their means
    # over the samples at or above p99 add up to at least p99 (each rounded to 0.1 ms).
    tail = row["stages_of_slowest_1pct_ms"]
    assert list(tail) == list(stages)
    assert sum(tail.values()) >= row["p99_ms"] - 0.3
    assert row["one_hop_p99_ms"] > 0 and set(row["cpu"]) == {
        "router",
        "evaluator",
        "load_generator",
    }
    # Far smaller than the targets' size (100k orders, 1M backlog, 5k fixes/s): not judged.
    assert [judged["met"] for judged in results["targets"]] == [None] * 4
    assert plot_to.read_bytes().startswith(b"\x89PNG")
    assert '"steady"' in capsys.readouterr().out
