"""The sampler's K (issue 19): rollout cost and the consistency model's x0 error at K = 20 and 50.

Run ``python -m benchmarks.steps_check [--priors digits,rings,airfoil] [--steps 20,50]``. The
shipped priors sample with K = 20 DDIM steps; the paper uses K = 50. The trained ε-networks do
not change with K (DDIM picks K at sampling time), but the consistency model was distilled
from the K = 20 deterministic sampler, at its 20 timesteps only. This script measures, per
prior and K:

* ``rollout_s_per_trajectory``: seconds per K-step stochastic trajectory (batch 64, no
  gradient; best of 3) — what SQDF's on-policy rollouts and every ask cost;
* ``tweedie_mse`` and ``consistency_mse``: the per-dimension MSE of the two one-call x0
  estimates against the end point of the **same K's** deterministic DDIM trajectory through
  each state (:func:`~sqdf_bbo.diffusion.consistency.consistency_error_report`), averaged
  over all states and over the noisiest half (t ≥ 500), where the estimate matters most;
* ``consistency_beats_tweedie``: whether the consistency model is still the better
  estimator at that K (if not, it would need re-distillation for that K).

It prints readable lines and, as its LAST line, one JSON object
``{prior: {K: {...}}}``. A measurement, not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch

from sqdf_bbo.diffusion.consistency import consistency_error_report
from sqdf_bbo.diffusion.prior import DiffusionPrior
from sqdf_bbo.diffusion.priors import load_prior

__all__ = ["rollout_seconds", "estimator_errors", "steps_check", "main"]


def rollout_seconds(prior: DiffusionPrior, n: int = 64, repeats: int = 3) -> float:
    """Best-of-``repeats`` wall seconds per trajectory of ``n`` K-step stochastic rollouts."""
    gen = torch.Generator(device=prior.device).manual_seed(0)
    best = float("inf")
    for _ in range(int(repeats)):
        t0 = time.perf_counter()
        prior.sample(n, gen, return_trajectory=True)
        best = min(best, time.perf_counter() - t0)
    return best / n


def estimator_errors(prior: DiffusionPrior, n: int = 256) -> dict[str, float]:
    """Tweedie and consistency-model x0 MSE against the K-step ODE end point (all states and
    t ≥ 500)."""
    table = consistency_error_report(prior, n=n, buckets=2)
    high = table[table["t_low"] >= 500]
    return {
        "tweedie_mse": float(table["tweedie_mse"].mean()),
        "consistency_mse": float(table["consistency_mse"].mean()),
        "tweedie_mse_high_t": float(high["tweedie_mse"].mean()),
        "consistency_mse_high_t": float(high["consistency_mse"].mean()),
    }


def steps_check(
    priors: list[str], steps: list[int], n: int = 256
) -> dict[str, dict[str, dict[str, Any]]]:
    """``{prior: {str(K): measurements}}`` for every shipped prior name and K."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name in priors:
        base = load_prior(name)
        out[name] = {}
        for K in steps:
            prior = base.with_settings(num_inference_steps=int(K))
            row: dict[str, Any] = {"rollout_s_per_trajectory": rollout_seconds(prior)}
            if prior.consistency is not None:
                row.update(estimator_errors(prior, n))
                row["consistency_beats_tweedie"] = bool(
                    row["consistency_mse"] < row["tweedie_mse"]
                    and row["consistency_mse_high_t"] < row["tweedie_mse_high_t"]
                )
            out[name][str(K)] = row
            print(f"{name} K={K}: " + ", ".join(f"{k} {v:.4g}" for k, v in row.items()))
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.steps_check``; the JSON object is printed last."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.steps_check", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--priors", default="digits,rings,airfoil")
    p.add_argument("--steps", default="20,50", help="comma-separated K values")
    p.add_argument("--n", type=int, default=256, help="trajectories for the x0 errors")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(int(args.threads))
    priors = [s.strip() for s in args.priors.split(",") if s.strip()]
    steps = [int(s) for s in args.steps.split(",") if s.strip()]
    print(json.dumps(steps_check(priors, steps, args.n)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
