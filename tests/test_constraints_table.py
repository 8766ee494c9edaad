"""benchmarks/constraints_table.py on hand-made run folders."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from benchmarks.constraints_table import markdown, per_run
from benchmarks.xfoil_database import database_best


def _run(root: Path, task: str, method: str, seed: int, xfoil: float, failed: list[int]) -> None:
    folder = root / "runs" / task / method / f"seed{seed}"
    folder.mkdir(parents=True)
    c = {"airfoil-ld": "a5", "airfoil-ld-a2": "a2"}[task]
    rows = [
        {"task": task, "method": method, "seed": seed, "round": r, "batch_size": 10,
         "queries": 10 * (r + 1), "n_failed": f, "valid_frac": 1 - f / 10,
         "natural_frac": 0.9, "constraint_acceptance": 0.5}
        for r, f in enumerate(failed)
    ]  # fmt: skip
    rows[-1].update({f"xfoil_best_{c}": xfoil, f"nf_gap_{c}": 1.0})
    pd.DataFrame(rows).to_csv(folder / "rounds.csv", index=False)
    (folder / "done.json").write_text(json.dumps({"suite": "airfoil-constraints"}))


def test_table_lists_every_seed_and_the_database(tmp_path: Path) -> None:
    _run(tmp_path / "a", "airfoil-ld", "sqdf", 0, 190.0, [5, 3])
    _run(tmp_path / "a", "airfoil-ld", "sqdf", 1, 200.0, [5, 1])
    _run(tmp_path / "b", "airfoil-ld", "cma-es", 0, 180.0, [0, 0])
    runs = per_run([(tmp_path / "a", ""), (tmp_path / "b", "population-16")])
    assert sorted(runs["method"].unique()) == ["cma-es (population-16)", "sqdf"]
    sqdf = runs[runs["method"] == "sqdf"].sort_values("seed")
    assert sqdf["failed_all"].tolist() == [0.4, 0.3]
    assert sqdf["valid_last"].tolist() == [0.7, 0.9]
    md = markdown(runs, database_best())
    assert "195.0 ± 5.0 (190.0, 200.0)" in md
    assert "best database airfoil (fx76mp120) | – | – | 191.4" in md
