"""Why SQDF and SEIKO barely move on the ``rings`` task: the numbers behind docs/benchmarks.md.

Run ``python -m benchmarks.rings_diagnosis`` (~30 s on one CPU thread). It prints three
tables and, as its LAST line, one JSON object with every number:

1. ``surrogate``: the bootstrap-ensemble surrogate fit on 32 prior samples (round 0 of the
   quick suite) against the true reward at the 8 ring-mode centres — mean, optimistic value
   and gradient. It ranks the modes correctly and its gradient points toward (3, 3): the
   surrogate is not the bottleneck.
2. ``targets``: the KL-regularized optimum p*(x) ∝ p(x) exp(s · r̃(x) / α) of the task,
   r̃ = (r − ȳ) / s_y standardized as both methods do, computed by importance weighting
   n prior samples (exact for the empirical prior). ``s = 1`` is the optimum of the
   undiscounted objective; ``s = γ^k`` is the tilt a transition k steps before x_0 gets
   under SQDF's discounted soft-Q estimate (γ = 0.9, K = 20: γ^k ≈ 0.15–0.35 on the early,
   mode-choosing steps). KL(p* ‖ p) in nats.
3. ``offline``: SQDF fine-tuned **offline** against the true standardized reward for many
   steps (no surrogate, no online loop), γ = 0.9 vs γ = 1: what each objective converges to.

This is a diagnosis that prints numbers, not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

import torch

from benchmarks.tasks import get_task
from sqdf_bbo.finetuning.kl import chain_kl, ours_alpha_to_official
from sqdf_bbo.finetuning.sqdf import SQDFConfig, SQDFTrainer
from sqdf_bbo.surrogates import make_surrogate

__all__ = ["mode_centres", "tilted_target", "surrogate_check", "offline_sqdf", "main"]

_NEAREST_MODE = (math.sqrt(2.0), math.sqrt(2.0))  # ring mode closest to the bump at (3, 3)
_MODE_RADIUS = 0.6  # "in the nearest mode": within 4 mode std (0.15) of its centre


def mode_centres(n: int = 8, radius: float = 2.0) -> torch.Tensor:
    """The ring's mode centres, shape ``(n, 2)`` (angle 0 first, counter-clockwise)."""
    ang = torch.arange(n, dtype=torch.float32) * (2 * math.pi / n)
    return torch.stack([radius * ang.cos(), radius * ang.sin()], 1)


def _near_fraction(x: torch.Tensor, w: torch.Tensor | None = None) -> float:
    d = torch.linalg.vector_norm(x - torch.tensor(_NEAREST_MODE, dtype=x.dtype), dim=1)
    inside = (d < _MODE_RADIUS).double()
    return float(inside.mean() if w is None else (w * inside).sum())


def tilted_target(
    x: torch.Tensor, r: torch.Tensor, alpha: float = 1.0, scale: float = 1.0
) -> dict[str, float]:
    """The optimum p* ∝ p · exp(scale · r̃ / α) on prior samples ``x (n, 2)`` with rewards ``r (n,)``.

    r̃ = (r − mean r) / std r. Returns the expected reward under p*, KL(p* ‖ p) in nats
    (of the reweighted empirical distribution) and p*'s mass in the nearest ring mode.
    """
    r = r.double()
    rs = (r - r.mean()) / r.std(unbiased=False)
    logw = scale * rs / float(alpha)
    w = torch.softmax(logw, 0)
    n = r.numel()
    kl = float((w * (w * n).clamp_min(1e-300).log()).sum())
    return {
        "scale": float(scale),
        "alpha": float(alpha),
        "reward": float((w * r).sum()),
        "kl": kl,
        "near_mode": _near_fraction(x, w),
    }


def surrogate_check(task, n: int = 32, seed: int = 0, steps: int = 200) -> list[dict[str, float]]:
    """Fit the ensemble surrogate on ``n`` prior samples; its values and gradients at the modes."""
    prior = task.prior()
    x = prior.sample(n, torch.Generator(device=prior.device).manual_seed(seed)).x.detach()
    oracle = task.oracle(seed)
    sur = make_surrogate("ensemble", seed=seed + 3, steps=steps).fit(x, oracle(x))
    modes = mode_centres().requires_grad_(True)
    opt = sur.optimistic(modes)
    grad = torch.autograd.grad(opt.sum(), modes)[0]
    opt = opt.detach()
    with torch.no_grad():
        mean = sur.mean(modes)
        true = oracle.evaluate_true(modes)
    return [
        {
            "angle_deg": 45.0 * k,
            "true": float(true[k]),
            "mean": float(mean[k]),
            "optimistic": float(opt[k]),
            "grad_x": float(grad[k, 0]),
            "grad_y": float(grad[k, 1]),
        }
        for k in range(modes.shape[0])
    ]


def offline_sqdf(
    task,
    gamma: float,
    steps: int = 600,
    lr: float = 3e-4,
    alpha: float = 1.0,
    n_eval: int = 2000,
    seed: int = 0,
) -> dict[str, float]:
    """SQDF fine-tuned offline against the true reward, standardized with prior statistics."""
    prior = task.prior()
    oracle = task.oracle(seed)
    g = torch.Generator(device=prior.device).manual_seed(seed + 100)
    with torch.no_grad():
        r0 = oracle.evaluate_true(prior.sample(n_eval, g).x)
    shift, spread = float(r0.mean()), float(r0.std(unbiased=False))

    def reward(x: torch.Tensor) -> torch.Tensor:
        return (oracle.evaluate_true(x) - shift) / spread

    cfg = SQDFConfig(
        kl_weight=ours_alpha_to_official(alpha, prior.dim),
        gamma=gamma,
        eta=1.0,
        x0_method="consistency" if prior.consistency is not None else "tweedie",
        steps=steps,
        transitions_per_step=64,
        lr=lr,
    )
    trainer = SQDFTrainer(prior, cfg, seed=seed)
    trainer.train(reward, progress=False)
    out = trainer.sample(n_eval, g, return_trajectory=True)
    assert out.trajectory is not None
    est = chain_kl(trainer.policy.denoiser, trainer.reference, out.trajectory[:512])
    with torch.no_grad():
        r = oracle.evaluate_true(out.x)
    return {
        "gamma": float(gamma),
        "steps": float(steps),
        "lr": float(lr),
        "reward": float(r.mean()),
        "near_mode": _near_fraction(out.x),
        "chain_kl": float(est.kl),
        "naturalness": float(task.naturalness.log_density(out.x.detach()).mean()),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Print the three tables and the JSON line; returns the JSON object."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=600, help="offline SQDF steps")
    ap.add_argument("--n", type=int, default=20000, help="prior samples for the targets")
    args = ap.parse_args(argv)
    torch.manual_seed(0)  # nothing below draws from it; set for any library default
    task = get_task("rings")
    prior = task.prior()

    # 1. The surrogate after round 0.
    sur = surrogate_check(task)
    print("1. ensemble surrogate fit on 32 prior samples, at the 8 ring modes")
    print(f"{'angle':>6} {'true':>7} {'mean':>7} {'optim.':>7} {'grad':>17}")
    for row in sur:
        print(
            f"{row['angle_deg']:6.0f} {row['true']:7.3f} {row['mean']:7.3f} "
            f"{row['optimistic']:7.3f}   ({row['grad_x']:+.3f}, {row['grad_y']:+.3f})"
        )

    # 2. The KL-regularized targets (α = 1 = α_official 1 at D = 2).
    g = torch.Generator(device=prior.device).manual_seed(1)
    with torch.no_grad():
        x = prior.sample(args.n, g).x.detach().cpu()
    r = task.oracle(0).evaluate_true(x)
    scales = [1.0, 0.9**3, 0.9**10, 0.9**15, 0.9**19, 0.0]
    targets = [tilted_target(x, r, 1.0, s) for s in scales]
    print("\n2. optimum of p(x) exp(s r~(x) / alpha), alpha = 1 (s = gamma^k; s = 0: the prior)")
    print(f"{'s':>6} {'reward':>7} {'KL nats':>8} {'nearest mode':>13}")
    for t in targets:
        print(f"{t['scale']:6.3f} {t['reward']:7.3f} {t['kl']:8.2f} {t['near_mode']:13.2f}")

    # 3. What SQDF converges to offline, γ = 0.9 vs 1.
    offline = [offline_sqdf(task, gam, steps=args.steps) for gam in (0.9, 1.0)]
    print(f"\n3. SQDF offline, true standardized reward, {args.steps} steps, lr 3e-4, alpha = 1")
    print(f"{'gamma':>6} {'reward':>7} {'chain KL':>9} {'nearest mode':>13} {'log q':>7}")
    for o in offline:
        print(
            f"{o['gamma']:6.2f} {o['reward']:7.3f} {o['chain_kl']:9.2f} "
            f"{o['near_mode']:13.2f} {o['naturalness']:7.2f}"
        )
    result = {"surrogate": sur, "targets": targets, "offline": offline}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
