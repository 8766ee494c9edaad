"""The surrogate fit benchmark runs end to end on a tiny problem and returns well-formed rows."""

from __future__ import annotations

import json
import math

from benchmarks.surrogate_fit import SURROGATE_NAMES, format_tables, run_benchmark

FAST = {
    "ensemble": {"steps": 20},
    "ucb": {"steps": 20},
    "gp": {"max_points": 32, "max_iter": 5},
}


def test_run_benchmark_structure_on_a_tiny_problem() -> None:
    result = run_benchmark(ns=(40,), n_test=50, n_digits=40, options=FAST)
    json.dumps(result)  # the JSON last line
    rows = result["rows"]
    # synthetic: 2 designs × 1 n × 3 surrogates; digits: 2 feature maps × 2 settings × 3,
    # plus the two pixel variants (ensemble bootstrap=False, ucb hidden=128)
    assert len(rows) == 6 + 12 + 2
    assert {r["surrogate"] for r in rows} == set(SURROGATE_NAMES)
    assert {r["data"] for r in rows} == {"2-D", "(1,8,8)", "digits pixels", "digits classifier"}
    for r in rows:
        assert set(r) == {"surrogate", "data", "n", "settings", "options", "fit_s", "r2"}
        assert r["fit_s"] >= 0
        assert math.isfinite(r["r2"]) and r["r2"] <= 1
    old_ucb = [r for r in rows if r["settings"] == "old" and r["surrogate"] == "ucb"]
    assert all(r["options"]["bonus"] == "ridge" for r in old_ucb)
    assert all(r["options"]["feature_std_floor"] == 0 for r in rows if r["settings"] == "old")
    assert {r["surrogate"] for r in rows if r["settings"] == "variant"} == {"ensemble", "ucb"}
    table = format_tables(result)
    assert "| 2-D | 40 |" in table and "| pixels | old |" in table
