"""Evidence that the shipped priors model their data: numbers plus a PNG of samples.

Usage::

    python -m benchmarks.prior_evidence --out docs/

Digits (all on the 360 held-out images, never seen in training):

- accuracy of the shipped classifier on real held-out digits;
- its mean max-softmax probability ("confidence") on real held-out digits, on
  samples of the ``digits`` prior, on Gaussian noise (N(0, 1) clipped to
  [-1, 1]) and on uniform noise in [-1, 1]: samples that look like digits score
  like real digits and far above noise;
- entropy of the predicted-class histogram of prior samples (log 10 ≈ 2.303 is
  all ten classes equally often);
- memorization check: RMSE from each image to its nearest *training* image, for
  held-out digits and for prior samples (samples much closer than held-out
  digits would mean the prior copies its training set), and the share of
  images within RMSE 0.1 of a training image ("near copies");
- the share of sample pixels outside [-1, 1] and outside [-1.1, 1.1] (the
  sampler is not clipped; real digits have many pixels exactly at -1).

Rings: mean exact log-density of prior samples vs of true samples, the share
of samples within 3 std of a ring component, and per-component counts.

The PNG (``prior_samples.png``) shows prior samples next to real held-out
digits, and rings samples over the true component centers.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from benchmarks.plotting import pyplot
from sqdf_bbo.classifier import load_digits_classifier
from sqdf_bbo.data import RingsDistribution, digits_split
from sqdf_bbo.diffusion.priors import load_prior

__all__ = ["digits_evidence", "rings_evidence", "main"]


def _confidence(model: torch.nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return model(x).softmax(-1).amax(-1).mean().item()


def _nn_rmse(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Per-row RMSE to the nearest row of ``ref``; x ``(n, D)``, ref ``(m, D)`` → ``(n,)``."""
    d = torch.cdist(x.flatten(1), ref.flatten(1))
    return d.min(dim=1).values / math.sqrt(x[0].numel())


def digits_evidence(n: int = 360, seed: int = 0) -> tuple[dict[str, float], torch.Tensor]:
    """Numbers for the digits prior; returns (metrics, prior samples ``(n, 1, 8, 8)``)."""
    split = digits_split()
    clf = load_digits_classifier()
    prior = load_prior("digits")
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    samples = prior.sample(n, gen).x
    t_sample = time.perf_counter() - t0
    noise_g = torch.randn(n, 1, 8, 8, generator=gen).clamp(-1, 1)
    noise_u = torch.rand(n, 1, 8, 8, generator=gen) * 2 - 1
    with torch.no_grad():
        acc = (clf(split.x_heldout).argmax(-1) == split.y_heldout).float().mean().item()
        pred = clf(samples).argmax(-1)
    hist = torch.bincount(pred, minlength=10).float() / n
    entropy = -(hist[hist > 0] * hist[hist > 0].log()).sum().item()
    metrics = {
        "classifier_heldout_accuracy": acc,
        "confidence_heldout_real": _confidence(clf, split.x_heldout),
        "confidence_prior_samples": _confidence(clf, samples),
        "confidence_gaussian_noise": _confidence(clf, noise_g),
        "confidence_uniform_noise": _confidence(clf, noise_u),
        "prior_class_entropy": entropy,
        "nn_rmse_heldout_to_train": _nn_rmse(split.x_heldout, split.x_train).mean().item(),
        "nn_rmse_samples_to_train": _nn_rmse(samples, split.x_train).mean().item(),
        "share_samples_near_copies": (_nn_rmse(samples, split.x_train) < 0.1).float().mean().item(),
        "share_heldout_near_copies": (_nn_rmse(split.x_heldout, split.x_train) < 0.1)
        .float()
        .mean()
        .item(),
        "pixels_beyond_1.0": (samples.abs() > 1.0).float().mean().item(),
        "pixels_beyond_1.1": (samples.abs() > 1.1).float().mean().item(),
        "sample_seconds": t_sample,
        "num_inference_steps": float(prior.num_inference_steps),
    }
    return metrics, samples


def rings_evidence(n: int = 2000, seed: int = 0) -> tuple[dict[str, float], torch.Tensor]:
    """Numbers for the rings prior; returns (metrics, prior samples ``(n, 2)``)."""
    dist = RingsDistribution()
    prior = load_prior("rings")
    gen = torch.Generator().manual_seed(seed)
    samples = prior.sample(n, gen).x
    real = dist.sample(n, gen)
    d = torch.cdist(samples.double(), dist.means)  # (n, C)
    near, comp = d.min(dim=1)
    counts = torch.bincount(comp[near < 3 * dist.std], minlength=dist.n_components)
    metrics = {
        "logp_prior_samples": dist.log_prob(samples).mean().item(),
        "logp_true_samples": dist.log_prob(real).mean().item(),
        "share_within_3std": (near < 3 * dist.std).double().mean().item(),
        "min_component_share": counts.min().item() / n,
        "max_component_share": counts.max().item() / n,
    }
    return metrics, samples


def _plot(digits: torch.Tensor, real: torch.Tensor, rings: torch.Tensor, path: Path) -> None:
    plt = pyplot()

    def grid(x: torch.Tensor, rows: int = 8, cols: int = 8) -> torch.Tensor:
        x = x[: rows * cols, 0]
        canvas = torch.full((rows * 9 - 1, cols * 9 - 1), 0.0)  # grey separators
        for k in range(x.shape[0]):
            r, c = divmod(k, cols)
            canvas[r * 9 : r * 9 + 8, c * 9 : c * 9 + 8] = x[k]
        return canvas

    fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.8))
    for ax, img, title in (
        (axes[0], grid(digits), "digits prior samples (K=20, η=1)"),
        (axes[1], grid(real), "real held-out digits"),
    ):
        ax.imshow(-img.clamp(-1, 1).numpy(), cmap="gray", vmin=-1, vmax=1)
        ax.set_title(title)
        ax.axis("off")
    means = RingsDistribution().means
    axes[2].scatter(rings[:, 0], rings[:, 1], s=3, alpha=0.4, label="prior samples")
    axes[2].scatter(means[:, 0], means[:, 1], c="red", marker="x", s=40, label="component means")
    axes[2].set_aspect("equal")
    axes[2].set_title("rings prior samples")
    axes[2].legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=Path("docs"), help="folder for prior_samples.png"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    dm, digits = digits_evidence(seed=args.seed)
    rm, rings = rings_evidence(seed=args.seed)
    print("| digits metric | value |\n|---|---|")
    for k, v in dm.items():
        print(f"| {k} | {v:.4f} |")
    print("\n| rings metric | value |\n|---|---|")
    for k, v in rm.items():
        print(f"| {k} | {v:.4f} |")
    real = digits_split().x_heldout
    # Show real digits in a fixed random order so every class appears.
    order = torch.randperm(real.shape[0], generator=torch.Generator().manual_seed(args.seed))
    path = args.out / "prior_samples.png"
    _plot(digits, real[order], rings, path)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
