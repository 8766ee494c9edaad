"""Issue 19's table: constrained reward and diversity front per task × K × γ rule, with the
wall time per round, next to the published K = 20 frontier.

Run ``python -m benchmarks.steps_table --runs runs/steps20,runs/steps50 --out DIR`` after the
``steps20`` / ``steps50`` / ``airfoil-steps*`` frontier suites (docs/benchmarks.md, "K and the
discount"). It reads every finished run under the ``--runs`` folders (its K from
``done.json``) and the published K = 20 frontier rows (``--published``, the 7-α frontiers of
the digits/rings and airfoil tasks), and writes to ``DIR``:

* ``steps_runs.csv``: one row per run (final round) with its K, source and wall time per round;
* ``steps_table.md``: per task and condition (K, γ rule) the constrained reward (α) of SQDF and
  both SEIKOs, SQDF / best SEIKO (the issue's target: ≥ 1.5) on the reward and on the gain over
  the prior, the diversity fronts, the wall time per round; then the α-mean tables and the
  reproduction check of the published rows;
* ``summary.json``: the same numbers.

Conditions (each on the same per-task α grid, :data:`STEPS_TASK_ALPHAS`):

====================  =========================================================================
``K20 constant``      published K = 20 rows (SQDF γ = 0.9, SEIKOs, prior) on the α grid
``K20 per50``         ``sqdf-per50`` runs (γ_20 = 0.9^2.5) with the same published SEIKO / prior
``K50``               the K = 50 runs (``sqdf`` is both rules there: γ_50 = 0.9)
``K20 published 7α``  the published numbers on their full 7-α grid (today's README)
====================  =========================================================================

The SEIKOs have no γ, so their K = 20 rows serve both K = 20 conditions.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.frontier.grid import STEPS_TASK_ALPHAS
from benchmarks.frontier.summary import FRONTIER_METRICS, frontier_means, summarize_frontier

__all__ = ["collect_runs", "conditions", "steps_summary", "steps_markdown", "main"]

SEIKOS = ("seiko-ucb", "seiko-bootstrap")
BASE_METHODS = ("prior", "sqdf", *SEIKOS)
PUBLISHED = "docs/results/frontier/frontier.csv,docs/results/airfoil/frontier/frontier.csv"
SHIPPED_K = 20  # K of the shipped priors (a run without num_inference_steps used it)


def collect_runs(folders: list[Path]) -> pd.DataFrame:
    """One row per finished run under ``folders``: the final round's frontier metrics, ``K``,
    ``wall_per_round`` (optimizer seconds per round) and ``ask_s`` (mean ask time)."""
    rows = []
    for folder in folders:
        for done_file in sorted(Path(folder).glob("runs/**/done.json")):
            run = done_file.parent
            if not (run / "rounds.csv").is_file():
                continue
            done = json.loads(done_file.read_text())
            rounds = pd.read_csv(run / "rounds.csv")
            last = rounds.iloc[-1]
            k = done.get("suite_settings", {}).get("num_inference_steps") or SHIPPED_K
            alpha = done.get("alpha_official")
            row = {
                "task": done["task"],
                "method": done["method"],
                "alpha_official": math.nan if alpha is None else float(alpha),
                "seed": int(done["seed"]),
                "K": int(k),
                "queries": int(last["queries"]),
                **{m: float(last.get(m, math.nan)) for m in FRONTIER_METRICS},
                "wall_per_round": float(last["wall_s"]) / len(rounds),
                "ask_s": float(rounds["ask_s"].mean()),
                "source": str(folder),
            }
            rows.append(row)
    return pd.DataFrame(rows)


def _on_grid(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows whose α is on their task's declared grid (α-free rows kept)."""
    keep = [
        math.isnan(a) or a in STEPS_TASK_ALPHAS.get(t, ())
        for t, a in zip(frame["task"], frame["alpha_official"], strict=True)
    ]
    return frame[np.asarray(keep, dtype=bool)]


def conditions(runs: pd.DataFrame, published: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The frames of the four conditions (module docstring), methods named
    ``prior``/``sqdf``/``seiko-*``."""
    pub = published[published["method"].isin(BASE_METHODS)]
    pub_grid = _on_grid(pub)
    out: dict[str, pd.DataFrame] = {"K20 constant": pub_grid, "K20 published 7α": pub}
    per50 = runs[(runs["K"] == SHIPPED_K) & (runs["method"] == "sqdf-per50")]
    if not per50.empty:
        per50 = per50.assign(method="sqdf")
        others = pub_grid[pub_grid["method"] != "sqdf"]
        out["K20 per50"] = pd.concat([others, per50], ignore_index=True)
    k50 = runs[(runs["K"] == 50) & runs["method"].isin(BASE_METHODS)]
    if not k50.empty:
        out["K50"] = _on_grid(k50)
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b:
        return None
    return a / b


def steps_summary(runs: pd.DataFrame, published: pd.DataFrame) -> dict[str, Any]:
    """``{condition: {task: {...}}}`` with each method's constrained reward, α and front, the
    best SEIKO, SQDF / best SEIKO on reward and on gain over the prior, and wall times."""
    walls = (
        runs.assign(method=runs["method"].replace({"sqdf-per50": "sqdf"}))
        .groupby(["task", "K", "method"])["wall_per_round"]
        .mean()
    )
    out: dict[str, Any] = {}
    for name, frame in conditions(runs, published).items():
        if frame.empty:
            continue
        summary = summarize_frontier(frontier_means(frame))
        out[name] = {}
        for task, methods in summary.items():
            prior = frame[(frame["task"] == task) & (frame["method"] == "prior")]
            prior_r = float(prior["reward_mean"].mean()) if not prior.empty else math.nan
            sq = methods.get("sqdf", {})
            seikos = {m: methods[m] for m in SEIKOS if m in methods}
            best_m = max(
                (m for m in seikos if seikos[m]["constrained_reward"] is not None),
                key=lambda m: seikos[m]["constrained_reward"],
                default=None,
            )
            best = None if best_m is None else seikos[best_m]["constrained_reward"]
            sq_r = sq.get("constrained_reward")
            k = 50 if name == "K50" else SHIPPED_K
            out[name][task] = {
                "K": k,
                "prior_reward": prior_r,
                "methods": methods,
                "best_seiko": best_m,
                "ratio": _ratio(sq_r, best),
                "gain_ratio": None
                if sq_r is None or best is None
                else _ratio(sq_r - prior_r, best - prior_r),
                "n_seeds": {
                    m: int(
                        frame[(frame["task"] == task) & (frame["method"] == m)]["seed"].nunique()
                    )
                    for m in methods
                },
                "wall_per_round": {
                    m: float(walls[(task, k, m)]) if (task, k, m) in walls.index else None
                    for m in ("sqdf", *SEIKOS)
                },
            }
    return out


def reproduction(runs: pd.DataFrame, published: pd.DataFrame) -> pd.DataFrame:
    """K = 20 runs of the published methods next to the published row of the same cell."""
    keys = ["task", "method", "alpha_official", "seed"]
    mine = runs[(runs["K"] == SHIPPED_K) & runs["method"].isin(BASE_METHODS)]
    both = mine.merge(published, on=keys, suffixes=("", "_published"))
    cols = keys + [
        c for m in ("reward_mean", "natural_frac", "vendi") for c in (m, f"{m}_published")
    ]
    return both[cols]


def _frame_markdown(frame: pd.DataFrame) -> str:
    """A plain markdown table of ``frame`` (floats to 4 significant digits)."""

    def cell(v: Any) -> str:
        return _fmt(v, 4) if isinstance(v, float) else str(v)

    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def _fmt(v: float | None, nd: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{nd}g}" if abs(v) < 1000 else f"{v:.0f}"


def _cr(entry: dict[str, Any]) -> str:
    r = entry.get("constrained_reward")
    if r is None:
        return "none natural"
    return f"{_fmt(r)} ({_fmt(entry.get('constrained_alpha'))})"


def steps_markdown(summary: dict[str, Any], runs: pd.DataFrame, repro: pd.DataFrame) -> str:
    """``steps_table.md``: the headline table, then every α-mean and the reproduction check."""
    lines = [
        "# K and the discount (issue 19)",
        "",
        "Constrained reward (α_official) = the best mean final reward over a method's α values "
        "whose mean natural frac is ≥ 0.95 × the prior's; ratio = SQDF / best SEIKO (target "
        "≥ 1.5), gain ratio = the same on the gain over the prior; front = diversity front "
        "area; wall = optimizer seconds per round (mean over the runs of that K; one process "
        "on 2 shared cores).",
        "",
        "| task | K, γ rule | SQDF | SEIKO-UCB | SEIKO-Bootstrap | ratio | gain ratio "
        "| front SQDF / UCB / Boot. | wall s/round SQDF / UCB / Boot. | seeds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = ["K20 published 7α", "K20 constant", "K20 per50", "K50"]
    tasks = list(dict.fromkeys(t for c in summary.values() for t in c))
    for task in tasks:
        for cond in order:
            e = summary.get(cond, {}).get(task)
            if e is None:
                continue
            m = e["methods"]
            fronts = " / ".join(
                _fmt(m.get(x, {}).get("diversity_front")) for x in ("sqdf", *SEIKOS)
            )
            walls = " / ".join(_fmt(e["wall_per_round"].get(x), 2) for x in ("sqdf", *SEIKOS))
            seeds = ",".join(str(e["n_seeds"].get(x, 0)) for x in ("sqdf", *SEIKOS))
            label = {"K50": "50, either (γ 0.9)", "K20 per50": "20, per50 (γ 0.768)",
                     "K20 constant": "20, constant (γ 0.9)",
                     "K20 published 7α": "20, constant, published 7-α grid"}[cond]  # fmt: skip
            lines.append(
                f"| {task} | {label} | {_cr(m.get('sqdf', {}))} | {_cr(m.get('seiko-ucb', {}))} "
                f"| {_cr(m.get('seiko-bootstrap', {}))} | {_fmt(e['ratio'])} "
                f"| {_fmt(e['gain_ratio'])} | {fronts} | {walls} | {seeds} |"
            )
    lines += ["", "## α means per condition", ""]
    # The per-α means of the run conditions (the published ones are in docs/results/frontier).
    for k in sorted(runs["K"].unique()):
        sub = runs[runs["K"] == k]
        means = frontier_means(sub.drop(columns=["K", "wall_per_round", "ask_s", "source"]))
        cols = ["task", "method", "alpha_official", "n_seeds", "reward_mean_mean",
                "reward_mean_se", "natural_frac_mean", "vendi_mean", "kl_to_prior_mean"]  # fmt: skip
        lines += [f"### runs at K = {k}", "", _frame_markdown(means[cols]), ""]
    lines += ["## Reproduction of the published K = 20 rows", ""]
    lines.append(_frame_markdown(repro) if not repro.empty else "(no cell)")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.steps_table --runs A,B --out DIR``; prints the headline table."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.steps_table", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--runs", required=True, help="comma-separated frontier output folders")
    p.add_argument("--published", default=PUBLISHED, help="comma-separated frontier.csv files")
    p.add_argument("--out", default="docs/results/steps")
    args = p.parse_args(argv)
    runs = collect_runs([Path(s) for s in args.runs.split(",") if s.strip()])
    if runs.empty:
        raise SystemExit(f"no finished run under {args.runs}")
    published = pd.concat(
        [pd.read_csv(s) for s in args.published.split(",") if s.strip()], ignore_index=True
    )
    summary = steps_summary(runs, published)
    repro = reproduction(runs, published)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs.drop(columns=["source"]).to_csv(out / "steps_runs.csv", index=False)
    md = steps_markdown(summary, runs, repro)
    (out / "steps_table.md").write_text(md)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(md.split("\n## ")[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
