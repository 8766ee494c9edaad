"""Evidence for the class-conditional latent digits prior (``digits-latent``).

Per class c = 0 … 9, from ``n`` samples of the prior conditioned on c (decoded to 8×8
images):

- ``accuracy``: share the shipped digits classifier (:mod:`sqdf_bbo.classifier`, trained on
  real digits, never on samples) labels c;
- ``natural_frac``: share above the 5th percentile of held-out real digits' log-density
  under the digits tasks' PCA + GMM density (:func:`benchmarks.tasks.get_task`), the
  measure the other digits priors are judged by;
- ``vendi``: the Vendi score of the samples (RBF kernel on pixels, the digits tasks'
  bandwidth), their diversity: guidance buys accuracy with diversity, so both are shown;
- the same numbers for the held-out real digits of class c (the ceiling; 26–37 per class,
  so their Vendi scores are on fewer images).

``class_grid`` draws one row of samples per class (the picture in docs/latent.md).

Usage: ``python -m benchmarks.latent_evidence`` rewrites the shipped prior's ``evidence.json``
(and its checksums) and the picture ``docs/results/latent/classes.png``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from benchmarks.plotting import pyplot
from benchmarks.tasks import get_task
from sqdf_bbo.checksums import write_checksums
from sqdf_bbo.classifier import load_digits_classifier
from sqdf_bbo.data import digits_split
from sqdf_bbo.diffusion.prior import DiffusionPrior
from sqdf_bbo.diffusion.priors import load_prior, prior_path

__all__ = ["prior_evidence", "class_scores", "class_grid", "main"]


def class_scores(x: torch.Tensor, label: int) -> dict[str, float]:
    """Classifier accuracy for ``label``, natural share and Vendi score of images
    ``(n, 1, 8, 8)``."""
    clf = load_digits_classifier()
    x = x.float().cpu()
    with torch.no_grad():
        pred = clf(x).argmax(1)
    scores = get_task("digits-ink").score_designs(x)
    return {
        "accuracy": float((pred == label).float().mean()),
        "natural_frac": scores["natural_frac"],
        "vendi": scores["vendi"],
    }


def _samples(prior: DiffusionPrior, label: int, n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator(device=prior.device).manual_seed(seed)
    cond = prior.encode_conditions([label] * n)
    with torch.no_grad():
        return prior.to_design(prior.sample(n, gen, cond=cond).x).cpu()


def prior_evidence(
    prior: DiffusionPrior, n_per_class: int = 200, seed: int = 0
) -> dict[str, object]:
    """Per-class and mean accuracy / natural share of the prior and of held-out real digits."""
    split = digits_split()
    rows = []
    for c in range(10):
        x = _samples(prior, c, n_per_class, seed + c)
        real = split.x_heldout[split.y_heldout == c]
        s, r = class_scores(x, c), class_scores(real, c)
        rows.append({"class": c, **s, **{f"real_{k}": v for k, v in r.items()}})
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0] if k != "class"}
    return {"n_per_class": n_per_class, "seed": seed, "per_class": rows, "mean": mean}


def class_grid(prior: DiffusionPrior, path: Path, per_class: int = 8, seed: int = 0) -> Path:
    """A PNG with ``per_class`` samples (columns) of each class (rows)."""
    plt = pyplot()
    fig, axes = plt.subplots(10, per_class, figsize=(per_class * 0.8, 10 * 0.8))
    for c in range(10):
        x = _samples(prior, c, per_class, seed + 100 + c)
        for j in range(per_class):
            ax = axes[c, j]
            ax.imshow(x[j, 0].numpy(), cmap="gray_r", vmin=-1, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(str(c), rotation=0, labelpad=10)
    fig.suptitle(f"{prior.name}: samples conditioned on each class")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main() -> None:
    torch.set_num_threads(1)
    prior = load_prior("digits-latent")
    path = prior_path("digits-latent")
    record = json.loads((path / "evidence.json").read_text())
    record.update(prior_evidence(prior))
    (path / "evidence.json").write_text(json.dumps(record, indent=2))
    write_checksums(path)
    out = Path(__file__).resolve().parents[1] / "docs" / "results" / "latent" / "classes.png"
    class_grid(prior, out)
    print(json.dumps(record["mean"], indent=2))


if __name__ == "__main__":
    main()
