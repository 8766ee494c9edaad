"""Report of the Ehrlich benchmark: best value against queries, solved seeds, feasibility, diversity.

``python -m benchmarks.sequence_report RUNS_DIR [--out DIR]`` reads every
``RUNS_DIR/runs/<ehrlich task>/<method>/seed<k>/rounds.csv`` (written by
``sqdf-bbo bench --suite ehrlich``) and writes ``DIR/sequences.md`` (one table per task) and
``DIR/best_<task>.png`` (best value so far against queries, mean ± SE over seeds).

Columns, per task and method, over the seeds run:

* ``best``: best value after the last round (mean ± SE);
* ``solved``: seeds that reached 1.0, and the median queries to reach it among those;
* ``feasible asks``: share of all asked sequences that were feasible (every round), and in
  the last round;
* ``last batch``: mean pairwise Hamming distance and Vendi score (cosine kernel on one-hot
  vectors) of the last batch, and its mean chain log-likelihood (feasible sequences).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.plotting import pyplot

__all__ = ["load_rounds", "sequence_table", "plot_best", "main"]


def load_rounds(runs: Path) -> pd.DataFrame:
    """Every ``rounds.csv`` of ehrlich tasks under ``runs/runs`` (or ``runs``), concatenated."""
    root = runs / "runs" if (runs / "runs").is_dir() else runs
    files = sorted(root.glob("ehrlich-*/*/seed*/rounds.csv"))
    if not files:
        raise FileNotFoundError(f"no ehrlich rounds.csv under {root}")
    return pd.concat([pd.read_csv(f) for f in files], ignore_index=True)


def _mean_se(v: np.ndarray, digits: int) -> str:
    v = v[np.isfinite(v)]
    if not v.size:
        return "–"
    se = v.std(ddof=1) / math.sqrt(v.size) if v.size > 1 else float("nan")
    return f"{v.mean():.{digits}f}" + (f" ± {se:.{digits}f}" if math.isfinite(se) else "")


def _rows(rounds: pd.DataFrame) -> list[tuple[str, str, list[str]]]:
    """(task, method, cells) per task and method (module docstring's columns)."""
    out = []
    for task, sub in rounds.groupby("task", sort=False):
        for method, m in sub.groupby("method", sort=False):
            runs = [r.sort_values("round") for _, r in m.groupby("seed")]
            best = np.array([r["best_so_far"].iloc[-1] for r in runs], dtype=float)
            solve_q = [float(r.loc[r["best_so_far"] >= 1.0 - 1e-9, "queries"].min()) for r in runs]
            solved = [s for s in solve_q if math.isfinite(s)]
            n_feas = sum(float((r["feasible_frac"] * r["batch_size"]).sum()) for r in runs)
            n_all = sum(float(r["batch_size"].sum()) for r in runs)
            last = pd.DataFrame([r.iloc[-1] for r in runs])
            med = f" ({int(np.median(solved))})" if solved else ""
            cells = [
                str(len(runs)),
                _mean_se(best, 3),
                f"{len(solved)}/{len(runs)}{med}",
                f"{n_feas / n_all:.3f} / {_mean_se(last['feasible_frac'].to_numpy(float), 3)}",
                _mean_se(last["hamming"].to_numpy(float), 1),
                _mean_se(last["vendi_onehot"].to_numpy(float), 1),
                _mean_se(last["naturalness"].to_numpy(float), 1),
            ]
            out.append((str(task), str(method), cells))
    return out


_HEADER = (
    "seeds | best | solved (median queries) | feasible asks (all / last round) "
    "| last batch: Hamming | Vendi (one-hot) | chain log-lik."
)


def sequence_table(rounds: pd.DataFrame, combined: bool = False) -> str:
    """Markdown: one table per task (module docstring), or one table with a task column."""
    rows = _rows(rounds)
    if combined:
        lines = [f"| task | method | {_HEADER} |", "|---|---|" + "---|" * 7]
        lines += [f"| {t} | {m} | " + " | ".join(c) + " |" for t, m, c in rows]
        return "\n".join(lines) + "\n"
    lines: list[str] = []
    for task in dict.fromkeys(t for t, _, _ in rows):
        q = int(rounds.loc[rounds["task"] == task, "queries"].max())
        lines += [f"### {task} — {q} queries per run", "", f"| method | {_HEADER} |"]
        lines.append("|---|" + "---|" * 7)
        lines += [f"| {m} | " + " | ".join(c) + " |" for t, m, c in rows if t == task]
        lines.append("")
    return "\n".join(lines)


def plot_best(rounds: pd.DataFrame, out: Path) -> list[Path]:
    """``out/best_<task>.png``: best value so far against queries, mean ± SE over seeds."""
    plt = pyplot()
    paths = []
    for task, sub in rounds.groupby("task", sort=False):
        fig, ax = plt.subplots(figsize=(6, 4))
        for method, m in sub.groupby("method", sort=False):
            g = m.groupby("queries")["best_so_far"]
            x = np.array(sorted(m["queries"].unique()))
            mu = g.mean().reindex(x).to_numpy(float)
            se = np.nan_to_num((g.std(ddof=1) / np.sqrt(g.count())).reindex(x).to_numpy(float))
            (line,) = ax.plot(x, mu, marker="o", ms=3, label=method)
            ax.fill_between(x, mu - se, mu + se, color=line.get_color(), alpha=0.2)
        ax.set_xlabel("oracle queries")
        ax.set_ylabel("best value so far")
        ax.set_ylim(0, 1.05)
        ax.set_title(task)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / f"best_{task}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.sequence_report", description=__doc__.split("\n")[0]
    )
    p.add_argument("runs", type=Path, help="the --out folder of `sqdf-bbo bench --suite ehrlich`")
    p.add_argument("--out", type=Path, default=None, help="where to write (default: runs)")
    args = p.parse_args(argv)
    out = args.out or args.runs
    out.mkdir(parents=True, exist_ok=True)
    rounds = load_rounds(args.runs)
    (out / "sequences.md").write_text(sequence_table(rounds))
    plot_best(rounds, out)
    print(sequence_table(rounds))


if __name__ == "__main__":
    main()
