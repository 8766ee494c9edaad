"""Frontier benchmark: the two summary numbers on hand-made tables, the grid, and smoke end to end."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.frontier import (
    FRONTIER_COLUMNS,
    FRONTIER_SUITES,
    FrontierSuite,
    constrained_reward,
    dominated_area,
    frontier_means,
    main,
    summarize_frontier,
)
from benchmarks.layout import ROUND_COLUMNS, is_done, run_dir
from benchmarks.suites import SUITES, make_optimizer


# ---------------------------------------------------------------------------- dominated_area
def test_area_of_one_point() -> None:
    assert dominated_area([(2.0, 3.0)]) == pytest.approx(2.0 * 2.0)


def test_area_of_two_nondominated_points() -> None:
    # (1, 5) covers [0, 1] x [1, 5]; (3, 2) adds [1, 3] x [1, 2].
    assert dominated_area([(1.0, 5.0), (3.0, 2.0)]) == pytest.approx(1 * 4 + 2 * 1)
    assert dominated_area([(3.0, 2.0), (1.0, 5.0)]) == pytest.approx(6.0)  # order-free


def test_dominated_and_clipped_points_add_nothing() -> None:
    base = dominated_area([(1.0, 5.0), (3.0, 2.0)])
    assert dominated_area([(1.0, 5.0), (3.0, 2.0), (0.5, 4.0), (2.0, 1.5)]) == pytest.approx(base)
    # negative gain, Vendi below 1, NaN: all outside the reference box
    assert dominated_area([(1.0, 5.0), (3.0, 2.0), (-1, 9), (9, 0.5), (math.nan, 9)]) == (
        pytest.approx(base)
    )
    assert dominated_area([(-0.5, 6.0), (-0.1, 2.0)]) == 0.0
    assert dominated_area(np.zeros((0, 2))) == 0.0


def test_area_with_another_reference() -> None:
    assert dominated_area([(2.0, 3.0)], ref=(1.0, 0.0)) == pytest.approx(1.0 * 3.0)


# ---------------------------------------------------------------------------- constrained_reward
def _points(rows: list[tuple[float, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["alpha_official", "reward", "natural_frac"])


def test_constrained_reward_picks_best_qualifying_alpha() -> None:
    pts = _points([(0.25, 3.0, 0.50), (1.0, 2.0, 0.90), (4.0, 1.0, 0.99)])
    # prior natural 0.94 -> threshold 0.893: alpha 0.25 fails, 1 and 4 qualify.
    assert constrained_reward(pts, 0.94) == (2.0, 1.0)
    # a stricter prior (1.0 -> 0.95) leaves only alpha 4
    assert constrained_reward(pts, 1.0) == (1.0, 4.0)


def test_constrained_reward_none_when_nothing_qualifies() -> None:
    pts = _points([(0.25, 3.0, 0.10), (16.0, 1.0, 0.80)])
    assert constrained_reward(pts, 0.9) is None
    assert constrained_reward(pts, math.nan) is None


def test_constrained_reward_of_a_single_point_method() -> None:
    assert constrained_reward(_points([(math.nan, 0.07, 1.0)]), 1.0) == (0.07, None)


def _means(rows: list[tuple]) -> pd.DataFrame:
    """A frontier_means-like table from (task, method, alpha, reward, natural_frac, vendi)."""
    cols = ["task", "method", "alpha_official", "reward_mean_mean", "natural_frac_mean"]
    return pd.DataFrame(rows, columns=[*cols, "vendi_mean"])


def test_summarize_frontier_on_a_hand_made_table() -> None:
    nan = math.nan
    means = _means(
        [
            ("t", "prior", nan, 1.0, 1.0, 6.0),
            ("t", "a", 0.5, 4.0, 0.5, 2.0),  # fails naturalness, gain 3, Vendi 2
            ("t", "a", 2.0, 2.0, 0.96, 5.0),  # qualifies, gain 1, Vendi 5
            ("t", "b", 1.0, 3.0, 0.2, 4.0),  # fails at every alpha
            ("t", "b", 4.0, 0.5, 0.3, 7.0),  # gain < 0: no area
            ("t", "gp-bo", nan, 1.5, 0.0, 12.0),
        ]
    )
    s = summarize_frontier(means)["t"]
    assert s["a"] == {"constrained_reward": 2.0, "constrained_alpha": 2.0, "diversity_front": 6.0}
    assert s["b"]["constrained_reward"] is None and s["b"]["constrained_alpha"] is None
    assert s["b"]["diversity_front"] == pytest.approx(2.0 * 3.0)
    assert s["prior"]["constrained_reward"] == 1.0 and s["prior"]["diversity_front"] == 0.0
    assert s["gp-bo"]["constrained_reward"] is None
    assert s["gp-bo"]["diversity_front"] == pytest.approx(0.5 * 11.0)


def test_frontier_means_standard_error_and_alpha_free_rows() -> None:
    rows = []
    for seed, v in enumerate([1.0, 2.0, 3.0]):
        base = {c: 0.0 for c in FRONTIER_COLUMNS} | {"task": "t", "seed": seed, "queries": 8}
        rows.append(base | {"method": "m", "alpha_official": 2.0, "reward_mean": v})
        rows.append(base | {"method": "prior", "alpha_official": math.nan, "reward_mean": 0.0})
    means = frontier_means(pd.DataFrame(rows)).set_index("method")
    assert means.loc["m", "reward_mean_mean"] == pytest.approx(2.0)
    assert means.loc["m", "reward_mean_se"] == pytest.approx(1.0 / math.sqrt(3))
    assert means.loc["prior", "n_seeds"] == 3 and math.isnan(means.loc["prior", "alpha_official"])


# ---------------------------------------------------------------------------- grid
def test_grid_declarations() -> None:
    quick, full = FRONTIER_SUITES["quick"], FRONTIER_SUITES["full"]
    assert full.alphas == (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0) and len(full.seeds) >= 3
    assert len(quick.seeds) >= 3 and quick.suite.budgets == (32, 64, 128)
    assert set(quick.tasks) == set(full.tasks) == {"rings", "digits-logit", "digits-ink"}
    cells = full.cells()
    # gamma 1 on rings only; prior / gp-bo once per seed (alpha None)
    assert {c[0] for c in cells if c[1] == "sqdf-gamma1"} == {"rings"}
    assert sum(1 for c in cells if c[1] == "prior") == len(full.tasks) * len(full.seeds)
    assert all(c[3] is None for c in cells if c[1] in ("prior", "gp-bo"))
    per_task = {t: sum(1 for c in cells if c[0] == t) for t in full.tasks}
    assert per_task["digits-ink"] == (3 * 7 + 2) * 3 and per_task["rings"] == (4 * 7 + 2) * 3


def test_frontier_suite_rejects_bad_grids() -> None:
    smoke = FRONTIER_SUITES["smoke"]
    with pytest.raises(ValueError, match="alphas"):
        replace(smoke, alphas=(1.0, -1.0))
    with pytest.raises(ValueError, match="distinct"):
        replace(smoke, alphas=(1.0, 1.0))
    with pytest.raises(ValueError, match="accepted values"):
        replace(smoke, methods=("adam",))
    assert isinstance(smoke, FrontierSuite)


def test_make_optimizer_sets_alpha_only_on_regularized_methods() -> None:
    from benchmarks.tasks import get_task

    task, suite = get_task("rings"), SUITES["smoke"]
    for method in ("sqdf", "seiko-bootstrap"):
        tuned = make_optimizer(method, task, 0, suite, alpha_official=4.0)
        assert tuned.config.finetune.kl_weight == 4
        default = type(make_optimizer(method, task, 0, suite).config)().finetune.kl_weight
        assert make_optimizer(method, task, 0, suite).config.finetune.kl_weight == default
    with pytest.raises(ValueError, match="no KL weight"):
        make_optimizer("prior", task, 0, suite, alpha_official=2.0)


# ---------------------------------------------------------------------------- end to end
def test_smoke_frontier_end_to_end_and_resume(tmp_path: Path, capsys) -> None:
    argv = ["--suite", "smoke", "--out", str(tmp_path), "--workers", "1", "--no-progress"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    fs = FRONTIER_SUITES["smoke"]
    cells = fs.cells()
    # One row per grid cell: 4 regularized methods x 2 alphas + prior + gp-bo, 1 seed.
    frame = pd.read_csv(tmp_path / "frontier.csv")
    assert list(frame.columns) == FRONTIER_COLUMNS and len(frame) == len(cells) == 10
    assert frame["alpha_official"].isna().sum() == 2
    assert set(frame.loc[frame["method"] == "sqdf", "alpha_official"]) == {0.25, 4.0}
    assert (frame["queries"] == sum(fs.suite.budgets)).all()
    # Each alpha in its own folder, with the two new rounds.csv columns.
    d = run_dir(tmp_path, "rings", "sqdf", 0, 0.25)
    assert d.parts[-2:] == ("a0.25", "seed0") and is_done(d)
    assert list(pd.read_csv(d / "rounds.csv").columns) == ROUND_COLUMNS
    assert {"optimism_gap", "pred_gap"} <= set(ROUND_COLUMNS)
    assert json.loads((d / "done.json").read_text())["alpha_official"] == 0.25
    assert is_done(run_dir(tmp_path, "rings", "prior", 0))
    # Outputs and the summary line.
    assert (tmp_path / "frontier_rings.png").stat().st_size > 1000
    md = (tmp_path / "frontier.md").read_text()
    assert "constrained reward" in md and "KL-optimal target" in md
    assert set(result) == {"rings"}
    assert set(result["rings"]) == {"prior", "sqdf", "seiko-ucb", "seiko-bootstrap", "gp-bo"} | {
        "sqdf-gamma1"
    }
    assert result["rings"]["prior"]["constrained_alpha"] is None
    for s in result["rings"].values():
        assert s["diversity_front"] >= 0.0
    # A second invocation re-runs nothing.
    stamp = (d / "rounds.csv").stat().st_mtime_ns
    assert main(argv) == 0
    assert (d / "rounds.csv").stat().st_mtime_ns == stamp
    meta = json.loads((tmp_path / "frontier.json").read_text())
    assert meta["runs_done_in_this_invocation"] == 0 and meta["runs"] == 10
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result
