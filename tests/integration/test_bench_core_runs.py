"""The core benchmark runs end to end on a small size and reports every figure (not timed: the
figures themselves are for bench/, never asserted here)."""

from __future__ import annotations

import pytest

from bench.core import main

pytestmark = pytest.mark.integration


def test_bench_core_reports_engine_naive_and_postgis(capsys: pytest.CaptureFixture[str]) -> None:
    results = main([200], n_fixes=3000, postgis_fixes=50, as_json=True)
    (row,) = results["rows"]
    assert row["orders"] == 200 and row["fixes"] == 3000
    assert row["engine_fixes_per_s"] > 0 and row["naive_fixes_per_s"] > 0
    assert row["ratio_vs_naive"] > 0
    # PostGIS is optional on a machine; when missing the row says why instead of a figure.
    assert "ratio_vs_postgis" in row or row["postgis"].startswith("skipped: ")
    assert '"rows"' in capsys.readouterr().out
