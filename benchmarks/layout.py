"""Where a benchmark run's files live, and the columns of its ``rounds.csv``.

Shared by the runner (which writes runs) and the reports (which read them)::

    OUT/runs/<task>/<method>[/a<alpha>]/seed<k>/rounds.csv   per-round metrics (ROUND_COLUMNS)
    OUT/runs/<task>/<method>[/a<alpha>]/seed<k>/samples.pt   up to 16 designs per round
    OUT/runs/<task>/<method>[/a<alpha>]/seed<k>/done.json    done marker

A run is finished (and skipped when a grid is resumed) once its ``rounds.csv`` and
``done.json`` both exist.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ROUND_COLUMNS", "Cell", "alpha_label", "cell_label", "run_dir", "is_done"]

ROUND_COLUMNS = [
    "task",
    "method",
    "seed",
    "round",
    "batch_size",
    "queries",
    "reward_mean",
    "reward_top10",
    "reward_max",
    "best_so_far",
    "n_failed",
    "naturalness",
    "natural_frac",
    "vendi",
    "pairwise_dist",
    "kl_to_prior",
    "optimism_gap",
    "pred_gap",
    "ask_s",
    "oracle_s",
    "wall_s",
]

Cell = tuple[str, str, int, float | None]
"""One run of a grid: ``(task, method, seed, alpha_official)`` (α ``None``: the method's default)."""


def alpha_label(alpha_official: float) -> str:
    """Folder name of one KL weight: ``a0.25``, ``a1``, ``a16`` (``%g`` of the value)."""
    return f"a{float(alpha_official):g}"


def run_dir(
    out: Path, task: str, method: str, seed: int, alpha_official: float | None = None
) -> Path:
    """Folder of one run: ``OUT/runs/<task>/<method>[/a<alpha>]/seed<k>``."""
    base = Path(out) / "runs" / task / method
    if alpha_official is not None:
        base = base / alpha_label(alpha_official)
    return base / f"seed{seed}"


def is_done(path: Path) -> bool:
    """A run is finished when its rounds.csv and done.json both exist."""
    return (path / "rounds.csv").is_file() and (path / "done.json").is_file()


def cell_label(cell: Cell) -> str:
    """``task/method[/a<alpha>]/seed<k>``: the run folder below ``OUT/runs``."""
    task_name, method, seed, alpha = cell
    mid = "" if alpha is None else f"/{alpha_label(alpha)}"
    return f"{task_name}/{method}{mid}/seed{seed}"
