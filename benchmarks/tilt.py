"""SQDF fine-tuner benchmark: analytic Gaussian tilt, step cost, rollout cost, digits reward gain.

Run ``python -m benchmarks.tilt [--device cuda]``. It prints a few readable
lines and, as its LAST line, one JSON object:

* ``shift_fraction``: achieved mean shift along the reward direction a divided
  by the KL-optimal shift aᵀΣ_ref a / α (γ = 1, ``tweedie``), for a 2-D Gaussian
  prior N(m, S) (``GaussianDenoiser``, K = 10 DDIM steps, η = 1) and r(x) = aᵀx.
  Σ_ref is the covariance of the *reference sampler's* outputs (measured).
* ``cov_ratio``: aᵀΣ_θ a / aᵀΣ_ref a (1 = the tilt kept the covariance), and
  ``cov_rel_err`` = ‖Σ_θ − Σ_ref‖_F / ‖Σ_ref‖_F.
* ``step_time_ratio``: time of one SQDF gradient step (loss + backward) on a
  batch of stored transitions, rollouts excluded, divided by the time of one
  plain denoising-loss forward + backward of the same network on the same batch.
* ``rollout_s_per_trajectory``: seconds per K-step policy trajectory (batched).
* ``digits``: the same costs for the shipped digits prior, plus the reward gain
  of a short offline fine-tuning against the shipped classifier's logit of
  digit 3.

This is a benchmark that prints numbers, not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from sqdf_bbo.classifier import load_digits_classifier
from sqdf_bbo.diffusion.networks import GaussianDenoiser
from sqdf_bbo.diffusion.prior import DiffusionPrior
from sqdf_bbo.diffusion.priors import load_prior
from sqdf_bbo.finetuning.kl import chain_kl, ours_alpha_to_official
from sqdf_bbo.finetuning.sqdf import RewardFn, SQDFConfig, SQDFTrainer

__all__ = ["gaussian_tilt", "step_timing", "rollout_timing", "digits_benchmark", "main"]

MEAN = (0.5, -0.3)
COV = ((1.0, 0.6), (0.6, 0.5))
DIRECTION = (0.8, -0.4)
DIGITS_TARGET = 3


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gaussian_prior(device: torch.device, K: int = 10) -> DiffusionPrior:
    """The analytic 2-D prior N(MEAN, COV) with an exact ε-network and K DDIM steps."""
    from diffusers import DDIMScheduler  # lazy: diffusers is slow to import

    sched = DDIMScheduler(clip_sample=False)
    net = GaussianDenoiser(torch.tensor(MEAN), torch.tensor(COV), sched.alphas_cumprod)
    prior = DiffusionPrior(net, sched, shape=(2,), num_inference_steps=K, value_range=None)
    return prior.to(device)


def step_timing(
    trainer: SQDFTrainer,
    reward_fn: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int,
    repeats: int = 10,
) -> dict[str, float]:
    """Median time of one SQDF gradient step vs one plain denoising-loss step, same batch.

    Both are forward + backward with respect to the trained parameters (no
    optimizer update); the SQDF batch is drawn from the trainer's buffer.
    """
    prior, params, device = (
        trainer.policy,
        list(trainer.trainable_parameters.values()),
        trainer.device,
    )
    batch = trainer.buffer.sample(batch_size, "random")
    x_t, step = batch.x_t.to(device), batch.step.cpu()
    x0 = trainer.buffer.trajectories()[batch.traj_index, -1].to(device)
    gen = torch.Generator(device=device).manual_seed(0)
    eps = torch.randn(x0.shape, generator=gen, device=device, dtype=x0.dtype)
    ab = prior.alpha_bars[step].to(device).reshape(-1, *([1] * (x0.ndim - 1)))
    x_noisy = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    t = prior.timesteps[step].to(device)

    def sqdf_step() -> None:
        loss, _ = trainer.loss(reward_fn, x_t, step)
        torch.autograd.grad(loss, params, allow_unused=True)

    def plain_step() -> None:
        out = prior.denoiser(x_noisy, t)
        out = getattr(out, "sample", out)
        loss = (out - eps).pow(2).mean()
        torch.autograd.grad(loss, params, allow_unused=True)

    def timed(fn: Callable[[], None]) -> float:
        for _ in range(2):  # warm-up
            fn()
        times = []
        for _ in range(repeats):
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    s, p = timed(sqdf_step), timed(plain_step)
    return {"sqdf_step_s": s, "plain_step_s": p, "step_time_ratio": s / p}


def rollout_timing(trainer: SQDFTrainer, n: int, repeats: int = 3) -> float:
    """Seconds per trajectory of sampling ``n`` K-step policy trajectories at once."""
    gen = torch.Generator(device=trainer.device).manual_seed(1)
    trainer.sample(n, gen, return_trajectory=True)  # warm-up
    times = []
    for _ in range(repeats):
        _sync(trainer.device)
        t0 = time.perf_counter()
        trainer.sample(n, gen, return_trajectory=True)
        _sync(trainer.device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) / n


def gaussian_tilt(device: torch.device, steps: int = 80, n_eval: int = 200_000) -> dict[str, Any]:
    """Fine-tune the analytic Gaussian prior with r(x) = aᵀx, γ = 1, tweedie; measure the tilt."""
    prior = gaussian_prior(device)
    a = torch.tensor(DIRECTION, device=device)

    def reward(x: torch.Tensor) -> torch.Tensor:
        return x @ a.to(x.dtype)

    alpha = 1.0
    cfg = SQDFConfig(
        kl_weight=ours_alpha_to_official(alpha, prior.dim),
        gamma=1.0,
        x0_method="tweedie",
        steps=steps,
        transitions_per_step=128,
        lr=0.05,
        grad_clip=None,
        rollouts_per_step=4,
        onpolicy_fraction=0.25,
        buffer_method="random",
    )
    trainer = SQDFTrainer(prior, cfg, seed=0)
    t0 = time.perf_counter()
    trainer.train(reward, progress=False)
    train_s = time.perf_counter() - t0
    # 1. Measure with common random numbers (same x_T and z for both samplers).
    ref = prior.sample(n_eval, torch.Generator(device=device).manual_seed(7)).x.double()
    pol = trainer.sample(n_eval, torch.Generator(device=device).manual_seed(7)).x.double()
    cov_ref, cov_pol = torch.cov(ref.T), torch.cov(pol.T)
    ad = a.double()
    shift = pol.mean(0) - ref.mean(0)
    optimal = cov_ref @ ad / alpha
    out: dict[str, Any] = {
        "shift_fraction": float(shift @ ad / (optimal @ ad)),
        "shift_rel_err": float(torch.linalg.norm(shift - optimal) / torch.linalg.norm(optimal)),
        "cov_ratio": float(ad @ cov_pol @ ad / (ad @ cov_ref @ ad)),
        "cov_rel_err": float(torch.linalg.norm(cov_pol - cov_ref) / torch.linalg.norm(cov_ref)),
        "gaussian_train_s": train_s,
        "gaussian_steps": steps,
    }
    out.update(step_timing(trainer, reward, batch_size=128))
    out["rollout_s_per_trajectory"] = rollout_timing(trainer, 256)
    return out


def _digits_reward(device: torch.device) -> tuple[RewardFn, Callable[[torch.Tensor], float]]:
    """(classifier logit of the target digit, fraction of designs classified as it)."""
    clf = load_digits_classifier(device=device)

    def logit(x: torch.Tensor) -> torch.Tensor:
        return clf(x)[:, DIGITS_TARGET]

    @torch.no_grad()
    def hit_rate(x: torch.Tensor) -> float:
        return float((clf(x).argmax(1) == DIGITS_TARGET).double().mean())

    return logit, hit_rate


def digits_benchmark(
    device: torch.device,
    steps: int = 40,
    train: str = "full",
    alphas_official: tuple[float, ...] = (1.0, 16.0),
) -> dict[str, Any]:
    """Step cost, rollout cost and short fine-tunings' reward gains on the digits prior.

    One run per α_official (converted with ``official_alpha_to_ours``); each reports
    the reward and the target-class rate of 256 samples before / after, and the
    exact chain KL of the fine-tuned sampler to the prior (``sqdf_bbo.finetuning.kl.chain_kl``).
    """
    prior = load_prior("digits", device=device)
    reward, hit_rate = _digits_reward(device)
    n_eval = 256
    x_ref = prior.sample(n_eval, torch.Generator(device=device).manual_seed(3)).x
    before = reward(x_ref)
    runs: list[dict[str, Any]] = []
    trainer: SQDFTrainer | None = None
    for a_off in alphas_official:
        cfg = SQDFConfig(
            kl_weight=a_off,
            gamma=0.9,
            x0_method="tweedie",
            steps=steps,
            transitions_per_step=64,
            rollouts_per_step=8,
            onpolicy_fraction=0.5,
            buffer_method="reward+gamma",
            train=train,  # type: ignore[arg-type]
        )
        trainer = SQDFTrainer(prior, cfg, seed=0)
        t0 = time.perf_counter()
        history = trainer.train(reward, progress=True)
        train_s = time.perf_counter() - t0
        out = trainer.sample(
            n_eval, torch.Generator(device=device).manual_seed(3), return_trajectory=True
        )
        after = reward(out.x)
        assert out.trajectory is not None
        kl = chain_kl(trainer.policy.denoiser, prior, out.trajectory)
        run: dict[str, Any] = {
            "alpha_official": a_off,
            "alpha": trainer.alpha,
            "train_s": train_s,
            "reward_before": float(before.double().mean()),
            "reward_after": float(after.double().mean()),
            "reward_gain": float(after.double().mean() - before.double().mean()),
            "chain_kl": kl.kl,
            "final_mean_step_kl": history[-1]["kl"] if history else float("nan"),
        }
        run["target_rate_before"] = hit_rate(x_ref)
        run["target_rate_after"] = hit_rate(out.x)
        runs.append(run)
    assert trainer is not None
    result: dict[str, Any] = {
        "prior": "digits",
        "reward": f"classifier_logit[{DIGITS_TARGET}]",
        "train": train,
        "K": prior.num_inference_steps,
        "steps": steps,
        "reward_gain": runs[0]["reward_gain"],
        "runs": runs,
    }
    result.update(step_timing(trainer, reward, batch_size=64))
    result["rollout_s_per_trajectory"] = rollout_timing(trainer, 64)
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    parser.add_argument("--steps", type=int, default=80, help="SQDF steps for the Gaussian tilt")
    parser.add_argument("--digits-steps", type=int, default=40, help="SQDF steps on digits")
    parser.add_argument("--skip-digits", action="store_true", help="only the Gaussian part")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    result = gaussian_tilt(device, steps=args.steps)
    print(
        f"gaussian tilt: shift_fraction={result['shift_fraction']:.4f} "
        f"cov_ratio={result['cov_ratio']:.4f} step_time_ratio={result['step_time_ratio']:.2f} "
        f"rollout={result['rollout_s_per_trajectory'] * 1e6:.1f} us/trajectory"
    )
    if not args.skip_digits:
        d = digits_benchmark(device, steps=args.digits_steps)
        result["digits"] = d
        print(
            f"digits ({d['prior']}, {d['reward']}): step_time_ratio={d['step_time_ratio']:.2f} "
            f"rollout={d['rollout_s_per_trajectory'] * 1e3:.2f} ms/trajectory"
        )
        for r in d["runs"]:
            rate = (
                f", target rate {r['target_rate_before']:.2f} -> {r['target_rate_after']:.2f}"
                if "target_rate_after" in r
                else ""
            )
            print(
                f"  alpha_official={r['alpha_official']:g}: reward {r['reward_before']:.3f} -> "
                f"{r['reward_after']:.3f}{rate}, chain KL {r['chain_kl']:.1f} nats "
                f"({d['steps']} steps)"
            )
    result["device"] = str(device)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
