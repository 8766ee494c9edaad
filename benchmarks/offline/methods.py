"""The offline methods: each proposes ``BATCH`` designs once from a visible archive.

================  ==========================================================================
``archive-best``  the ``BATCH`` best visible designs (Design-Bench's "D(best)" row)
``prior``         ``BATCH`` samples of the pretrained prior (no archive)
``grad-ascent``   Design-Bench's "gradient ascent, mean ensemble": from the ``BATCH`` best
                  visible designs, ``GA_STEPS`` Adam steps (lr ``GA_LR``) on the mean of a
                  bootstrap ensemble fit on the visible archive, in coordinates standardized
                  by the visible designs (std floored at 0.1 × the mean std), clamped to the
                  task's box every step
``cma-es``        CMA-ES (pycma, :class:`~sqdf_bbo.optimizers.CMAES`) on the same ensemble
                  mean: starts at the best visible design, σ0 = 0.15 × box width, population
                  ``BATCH``, ``CMA_ITERATIONS`` iterations; its next population is the batch
``seiko``         SEIKO-Bootstrap warm-started: the archive told with ``tell_external``
                  (failed points included), then one ``ask`` (its default optimistic reward)
``sqdf``          SQDF warm-started the same way (the default optimistic reward)
``sqdf-k<κ>``     SQDF warm-started with the conservative reward μ − κ·σ (κ = 0: the mean)
================  ==========================================================================

Every method gets the same surrogate settings (:data:`SETTINGS`: a 4-head bootstrap
ensemble, 300 training steps) and the same seed; the fine-tuned methods the quick suite's
fine-tuning settings (SQDF 40 steps of 32 transitions and 8 rollouts; SEIKO 10 steps of 32
chains, the official ratio).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from benchmarks.offline.archives import Archive
from benchmarks.tasks import get_task
from sqdf_bbo.optimizers import CMAES, SEIKO, SQDF, PriorSampler, SEIKOConfig, SQDFOptimizerConfig
from sqdf_bbo.surrogates import EnsembleSurrogate

__all__ = ["BATCH", "SETTINGS", "OFFLINE_METHODS", "propose", "make_finetuned"]

BATCH = 128
GA_STEPS = 200
GA_LR = 0.01
CMA_ITERATIONS = 20
SETTINGS: dict[str, Any] = {
    "surrogate_options": {"steps": 300, "n_heads": 4},
    "sqdf": {"steps": 40, "transitions_per_step": 32, "rollouts_per_step": 8},
    "seiko": {"steps": 10, "chains_per_step": 32},
}
OFFLINE_METHODS = (
    "archive-best",
    "prior",
    "grad-ascent",
    "cma-es",
    "seiko",
    "sqdf",
    "sqdf-k0",
    "sqdf-k2",
    "sqdf-k10",
)


def make_finetuned(method: str, task_name: str, seed: int, prior: Any = None) -> SEIKO | SQDF:
    """A fresh SEIKO / SQDF optimizer of ``method`` (``seiko``, ``sqdf``, ``sqdf-k<κ>``) on
    ``prior`` (default: the task's shipped prior)."""
    prior = get_task(task_name).prior() if prior is None else prior
    sur = dict(SETTINGS["surrogate_options"])
    if method == "seiko":
        cfg = SEIKOConfig(surrogate="ensemble", surrogate_options=sur, finetune=SETTINGS["seiko"])
        return SEIKO(prior, batch_size=BATCH, seed=seed, config=cfg)
    extra: dict[str, Any] = {}
    if method.startswith("sqdf-k"):
        extra = {"surrogate_objective": "conservative", "conservatism": float(method[6:])}
    elif method != "sqdf":
        raise ValueError(f"unknown fine-tuned method {method!r}")
    cfg = SQDFOptimizerConfig(
        surrogate_options=sur, finetune=SETTINGS["sqdf"], progress=False, **extra
    )
    return SQDF(prior, batch_size=BATCH, seed=seed, config=cfg)


def _ensemble(x: torch.Tensor, y: np.ndarray, seed: int) -> EnsembleSurrogate:
    ok = np.isfinite(y)
    sur = EnsembleSurrogate(seed=seed, **SETTINGS["surrogate_options"])
    return sur.fit(x[torch.as_tensor(ok)], torch.as_tensor(y[ok]))


def _top(x: torch.Tensor, y: np.ndarray, n: int) -> torch.Tensor:
    order = np.argsort(np.where(np.isfinite(y), y, -np.inf))[::-1][:n]
    return x[torch.as_tensor(order.copy())]


def _grad_ascent(x: torch.Tensor, y: np.ndarray, seed: int, box: tuple[float, float]):
    sur = _ensemble(x, y, seed)
    # 1. coordinates standardized by the visible designs (std floored, as the surrogate's)
    mean, std = x.mean(0), x.std(0)
    std = std.clamp_min(0.1 * float(std.mean()))
    z = ((_top(x, y, BATCH) - mean) / std).clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=GA_LR)
    # 2. Adam ascent on the ensemble mean, every design kept in the task's box
    for _ in range(GA_STEPS):
        opt.zero_grad()
        (-sur.mean(mean + std * z).sum()).backward()
        opt.step()
        with torch.no_grad():
            z.copy_(((mean + std * z).clamp(*box) - mean) / std)
    return (mean + std * z).detach().clamp(*box)


def _cma_es(x: torch.Tensor, y: np.ndarray, seed: int, box: tuple[float, float]):
    sur = _ensemble(x, y, seed)
    es = CMAES(tuple(x.shape[1:]), box, x0=_top(x, y, 1)[0], batch_size=BATCH, seed=seed)
    for _ in range(CMA_ITERATIONS):
        b = es.ask()
        with torch.no_grad():
            es.tell(b.ids, sur.mean(b.x.float()).double())
    return es.ask().x.float()


def propose(
    method: str, archive: Archive, seed: int, prior: Any = None
) -> tuple[torch.Tensor, Any]:
    """``BATCH`` designs ``(BATCH, *shape)`` of ``method`` from the visible part of
    ``archive``, and the warm-started optimizer for the fine-tuned methods (else ``None``).
    ``prior``: the prior of the generative methods (default: the task's shipped prior)."""
    task = get_task(archive.task)
    prior = task.prior() if prior is None else prior
    x, y, reasons = archive.seen()
    if method == "archive-best":
        return _top(x, y, BATCH), None
    if method == "prior":
        return PriorSampler(prior, batch_size=BATCH, seed=seed).ask().x, None
    if method == "grad-ascent":
        return _grad_ascent(x, y, seed, task.box), None
    if method == "cma-es":
        return _cma_es(x, y, seed, task.box), None
    opt = make_finetuned(method, archive.task, seed, prior)
    opt.tell_external(x, y, reasons=reasons)
    return opt.ask().x, opt
