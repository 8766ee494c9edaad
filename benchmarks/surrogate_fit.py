"""Fit time and held-out R² of every surrogate: the numbers behind docs/surrogates.md.

Run ``python -m benchmarks.surrogate_fit [--out FILE.json]`` (about 30 s on one CPU
thread). It prints two tables and, as its LAST line, one JSON object with every number.

1. ``synthetic`` ("Measured"): the smooth test function
   ``sin 3s₁ + sin 2s₂ + ½ sin 2s₁s₂`` on 2-D designs ``x = s ∈ [-1.5, 1.5]²`` (training
   noise σ = 0.05) and on (1,8,8) designs ``x = A s`` (a fixed random linear embedding of a
   latent ``s ∈ [-1, 1]²``, ``y = sines(1.5 s)``); n = 300 and 3000 training points (seed
   0), held-out R² of ``mean`` on 1000 noise-free points (seed 9). Current defaults.
2. ``digits`` ("On real digits"): reward ``DigitsClassOracle(target=3)`` logit plus
   N(0, 0.1²) noise (oracle seed 0) on 300 random training-split digits (a permutation
   from a generator seeded 0); held-out R² of ``mean`` on the 360 held-out digits
   (noise-free logit); raw pixels and ``feature_map=load_digits_classifier().features``;
   each with the current defaults and with the old (v0.1) settings
   ``feature_std_floor=0`` (and, for ``ucb``, ``bonus="ridge"``); on raw pixels also
   ``ensemble`` with ``bootstrap=False`` and ``ucb`` with ``hidden=128`` (``PIXEL_VARIANTS``).

R² = 1 − mean((μ − y)²) / mean((y − ȳ)²). Fit time is the wall time of ``fit`` after
one untimed warm-up fit of each surrogate (library imports, first-call costs).
This is a measurement that prints numbers, not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from oracles.digits import DigitsClassOracle
from sqdf_bbo.classifier import load_digits_classifier
from sqdf_bbo.data import digits_split
from sqdf_bbo.surrogates import make_surrogate

__all__ = [
    "SURROGATE_NAMES",
    "OLD_SETTINGS",
    "PIXEL_VARIANTS",
    "sines_2d",
    "dataset_2d",
    "dataset_image",
    "dataset_digits",
    "r_squared",
    "synthetic_datasets",
    "measure",
    "synthetic_rows",
    "digits_rows",
    "run_benchmark",
    "format_tables",
    "main",
]

SURROGATE_NAMES: tuple[str, ...] = ("ensemble", "ucb", "gp")
"""The surrogates measured, in table order."""

OLD_SETTINGS: dict[str, dict[str, Any]] = {
    "ensemble": {"feature_std_floor": 0.0},
    "ucb": {"feature_std_floor": 0.0, "bonus": "ridge"},
    "gp": {"feature_std_floor": 0.0},
}
"""Options restoring the v0.1 behaviour of each surrogate (before the floor and the official bonus)."""

PIXEL_VARIANTS: dict[str, dict[str, Any]] = {
    "ensemble": {"bootstrap": False},
    "ucb": {"hidden": 128},
}
"""One non-default option per MLP surrogate, measured on raw digit pixels with the current defaults."""

Dataset = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
"""``(x_train, y_train, x_test, y_test)``."""


# ------------------------------------------------------------------ data (as in the docs)
def sines_2d(x: torch.Tensor) -> torch.Tensor:
    """Smooth test function of 2-D designs ``(n, 2)``: ``sin 3x₁ + sin 2x₂ + ½ sin 2x₁x₂``."""
    return torch.sin(3 * x[:, 0]) + torch.sin(2 * x[:, 1]) + 0.5 * torch.sin(2 * x[:, 0] * x[:, 1])


def dataset_2d(n: int, seed: int, noise: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` uniform designs in ``[-1.5, 1.5]²`` and ``sines_2d`` plus N(0, noise²)."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, 2, generator=g) * 2 - 1) * 1.5
    return x, sines_2d(x) + noise * torch.randn(n, generator=g)


def dataset_image(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(1, 8, 8) designs with low-dim structure: x = A s for a latent s ∈ [-1, 1]², y = sines(1.5 s).

    Returns ``(x, y, s)``; ``A`` is fixed (seed 123), noise-free.
    """
    embed = torch.randn(64, 2, generator=torch.Generator().manual_seed(123)) / math.sqrt(2)
    g = torch.Generator().manual_seed(seed)
    s = torch.rand(n, 2, generator=g) * 2 - 1
    x = (s @ embed.T).reshape(n, 1, 8, 8)
    return x, sines_2d(s * 1.5), s


def dataset_digits(n: int, seed: int = 0, noise: float = 0.1) -> Dataset:
    """``n`` random training-split digits with the noisy class-3 logit; the 360 held-out ones noise-free."""
    split = digits_split()
    order = torch.randperm(split.x_train.shape[0], generator=torch.Generator().manual_seed(seed))
    x = split.x_train[order[:n]]
    oracle = DigitsClassOracle(target=3, noise_std=noise, seed=seed)
    y = oracle(x).float()
    with torch.no_grad():
        yt = oracle.evaluate_true(split.x_heldout).float()
    return x, y, split.x_heldout, yt


def r_squared(pred: torch.Tensor, y: torch.Tensor) -> float:
    """Coefficient of determination ``1 − mean((pred − y)²) / mean((y − ȳ)²)``."""
    pred, y = pred.double(), y.double()
    return float(1 - ((pred - y) ** 2).mean() / ((y - y.mean()) ** 2).mean())


def synthetic_datasets(ns: Sequence[int], n_test: int) -> dict[tuple[str, int], Dataset]:
    """The "Measured" datasets keyed by ``(designs, n)``: train seed 0, test seed 9 noise-free."""
    x2t, y2t = dataset_2d(n_test, seed=9, noise=0.0)
    xit, yit = dataset_image(n_test, seed=9)[:2]
    out: dict[tuple[str, int], Dataset] = {}
    for n in ns:
        out[("2-D", n)] = (*dataset_2d(n, seed=0), x2t, y2t)
    for n in ns:
        out[("(1,8,8)", n)] = (*dataset_image(n, seed=0)[:2], xit, yit)
    return out


# ------------------------------------------------------------------ measuring
def measure(
    name: str,
    data: Dataset,
    feature_map: Callable[[torch.Tensor], torch.Tensor] | None = None,
    **options: Any,
) -> dict[str, float]:
    """Fit ``make_surrogate(name, seed=0, **options)`` on the training part; fit seconds and R²."""
    x, y, xt, yt = data
    sur = make_surrogate(name, seed=0, feature_map=feature_map, **options)
    start = time.perf_counter()
    sur.fit(x, y)
    fit_s = time.perf_counter() - start
    with torch.no_grad():
        r2 = r_squared(sur.mean(xt), yt)
    return {"fit_s": fit_s, "r2": r2}


def _warm_up(names: Sequence[str], options: dict[str, dict[str, Any]]) -> None:
    """One small untimed fit per surrogate, so first-call costs are not in the timings."""
    x, y = dataset_2d(32, seed=1)
    for name in names:
        measure(name, (x, y, x, y), **options.get(name, {}))


def _row(
    name: str, data: str, n: int, settings: str, result: dict[str, float], options: dict
) -> dict[str, Any]:
    return {
        "surrogate": name,
        "data": data,
        "n": n,
        "settings": settings,
        "options": options,
        **result,
    }


def synthetic_rows(
    names: Sequence[str], ns: Sequence[int], n_test: int, options: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """ "Measured" rows: every surrogate with its current defaults on each synthetic dataset."""
    rows = []
    for (designs, n), data in synthetic_datasets(ns, n_test).items():
        for name in names:
            opts = dict(options.get(name, {}))
            rows.append(_row(name, designs, n, "current", measure(name, data, **opts), opts))
    return rows


def _digits_settings(name: str, settings: str, base: dict[str, Any]) -> dict[str, Any] | None:
    """Options of ``name`` under ``settings`` ("current", "old", "variant"); None: not measured."""
    extra = {"current": {}, "old": OLD_SETTINGS[name], "variant": PIXEL_VARIANTS.get(name)}
    if extra[settings] is None:
        return None
    return {**base, **extra[settings]}


def digits_rows(
    names: Sequence[str], n: int, options: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Rows of "On real digits": pixels / classifier features × current / old settings.

    Raw pixels also get the ``PIXEL_VARIANTS`` rows (settings ``"variant"``).
    """
    data = dataset_digits(n)
    maps = {"digits pixels": None, "digits classifier": load_digits_classifier().features}
    rows = []
    for label, fmap in maps.items():
        plans = ("current", "old", "variant") if fmap is None else ("current", "old")
        for settings in plans:
            for name in names:
                opts = _digits_settings(name, settings, options.get(name, {}))
                if opts is None:
                    continue
                result = measure(name, data, feature_map=fmap, **opts)
                rows.append(_row(name, label, n, settings, result, opts))
    return rows


def run_benchmark(
    ns: Sequence[int] = (300, 3000),
    n_test: int = 1000,
    n_digits: int = 300,
    names: Sequence[str] = SURROGATE_NAMES,
    options: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Measure every surrogate; returns ``{"rows": [...], "threads": ..., "load": ...}``.

    Each row: ``surrogate``, ``data`` (``"2-D"``, ``"(1,8,8)"``, ``"digits pixels"``,
    ``"digits classifier"``), ``n``, ``settings`` (``"current"`` defaults or ``"old"`` v0.1),
    ``options`` (passed to ``make_surrogate``), ``fit_s`` and ``r2``. ``options`` maps a
    surrogate name to extra config fields (e.g. fewer ``steps`` for a quick check).
    ``n_digits = 0`` skips the digits rows.
    """
    options = options or {}
    _warm_up(names, options)
    rows = synthetic_rows(names, ns, n_test, options)
    if n_digits:
        rows += digits_rows(names, n_digits, options)
    return {
        "rows": rows,
        "threads": torch.get_num_threads(),
        "load": list(os.getloadavg()),
        "torch": torch.__version__,
    }


# ------------------------------------------------------------------ printing
def _cell(rows: list[dict[str, Any]], name: str, **key: Any) -> str:
    for r in rows:
        if r["surrogate"] == name and all(r[k] == v for k, v in key.items()):
            return f"{r['fit_s']:.1f} s / {r['r2']:.3f}"
    return "—"


def format_tables(result: dict[str, Any], names: Sequence[str] = SURROGATE_NAMES) -> str:
    """The two markdown tables of docs/surrogates.md (fit time / held-out R²)."""
    rows = result["rows"]
    head = "| " + " | ".join(f"{n} fit / R²" for n in names) + " |"
    sep = "|---" * len(names) + "|"
    lines = ["| designs | n " + head, "|---|---" + sep]
    for data, n in dict.fromkeys((r["data"], r["n"]) for r in rows if r["settings"] == "current"):
        if data.startswith("digits"):
            continue
        cells = " | ".join(_cell(rows, m, data=data, n=n, settings="current") for m in names)
        lines.append(f"| {data} | {n} | {cells} |")
    digits = [r for r in rows if r["data"].startswith("digits")]
    if digits:
        lines += ["", "| features | settings " + head, "|---|---" + sep]
        for data in ("digits pixels", "digits classifier"):
            for settings in ("current", "old"):
                cells = " | ".join(_cell(digits, m, data=data, settings=settings) for m in names)
                lines.append(f"| {data.split()[1]} | {settings} | {cells} |")
        variants = [r for r in digits if r["settings"] == "variant"]
        lines += [""] if variants else []
        for r in variants:
            opt = ", ".join(f"{k}={v!r}" for k, v in PIXEL_VARIANTS[r["surrogate"]].items())
            cell = f"{r['fit_s']:.1f} s / {r['r2']:.3f}"
            lines.append(f"pixels, current defaults, {r['surrogate']} {opt}: {cell}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Print the tables and the JSON line (also written to ``--out``); returns the JSON object."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON object here")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)  # nothing below draws from it; set for any library default
    result = run_benchmark()
    print(format_tables(result))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
