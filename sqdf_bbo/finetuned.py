"""Shared base of the optimizers that fine-tune a diffusion prior against an optimistic surrogate.

SQDF (:mod:`sqdf_bbo.sqdf_optimizer`) and the SEIKO baseline (:mod:`sqdf_bbo.baselines.seiko`)
differ only in how one round fine-tunes the sampler. Everything else lives here:

1. fit the surrogate on every successful observation (asked and external);
2. reward r̂(x) = (optimistic(x) − ȳ) / s_y, standardized with the observed values so that α
   means the same thing for any scale of the oracle (``standardize_reward=False`` keeps the
   raw optimistic value);
3. ``_finetune`` (the subclass's one required hook) fine-tunes ``self.trainer.policy``;
4. ``_propose`` samples the batch from the fine-tuned policy, keeping each trajectory;
5. ``_metrics`` estimates the chain KL of the current sampler to the pretrained prior.

A subclass sets ``method``, ``config_class`` (a frozen dataclass with ``to_dict``/``from_dict``
and the fields ``surrogate``, ``surrogate_options``, ``standardize_reward``, ``clip_designs``),
builds ``self.trainer`` in ``_make_trainer`` (an object with ``.policy``, ``state_dict()`` and
``load_state_dict()``) and implements ``_finetune``.
"""

from __future__ import annotations

import math
import time
from abc import abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch

from .optimizer import Optimizer, Proposal
from .prior import DiffusionPrior

__all__ = ["FinetunedPriorOptimizer", "sample_proposal", "tail_mean"]


def sample_proposal(
    prior: DiffusionPrior, n: int, generator: torch.Generator, clip: bool
) -> Proposal:
    """n designs of ``prior`` (network in eval mode) with their trajectories ``(n, K+1, *shape)``;
    designs clamped to ``prior.value_range`` when ``clip`` (the trajectory keeps the chain)."""
    net = prior.denoiser
    was_training = net.training
    net.eval()
    try:
        out = prior.sample(n, generator, return_trajectory=True)
    finally:
        net.train(was_training)
    x = out.x
    if clip and prior.value_range is not None:
        x = x.clamp(*prior.value_range)
    return Proposal(x, out.trajectory)


def tail_mean(logs: list[dict[str, float]], key: str, fraction: float = 0.25) -> float:
    """Mean of ``key`` over the last ``fraction`` of per-step logs (finite values only)."""
    tail = logs[-max(1, int(len(logs) * fraction)) :] if logs else []
    vals = [m[key] for m in tail if math.isfinite(m[key])]
    return float(sum(vals) / len(vals)) if vals else math.nan


class FinetunedPriorOptimizer(Optimizer):
    """Ask/tell optimizer whose sampler is a prior fine-tuned each round against a surrogate.

    Args:
        prior: the pretrained :class:`~sqdf_bbo.prior.DiffusionPrior` (not modified).
        batch_size: designs per ``ask()``.
        seed: seeds every random draw (sampling, fine-tuning, surrogate).
        config: an instance of ``config_class`` (or a dict of its fields); default settings
            when ``None``.
        study: folder to write the study through to (crash-safe; resume with ``load``).
        feature_map: optional ``(n, *shape) -> (n, F)`` map the surrogate sees instead of the
            flattened designs (e.g. a classifier's features). It is code, so a study folder
            records only that one was used: pass it again to ``load(path, feature_map=...)``.
    """

    config_class: ClassVar[type]

    def __init__(
        self,
        prior: DiffusionPrior,
        batch_size: int = 64,
        seed: int = 0,
        config: Any = None,
        study: str | Path | None = None,
        feature_map: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if not isinstance(prior, DiffusionPrior):
            raise TypeError(
                f"prior must be a DiffusionPrior (e.g. sqdf_bbo.load_prior('digits')), "
                f"got {type(prior).__name__}"
            )
        cls = self.config_class
        if config is None:
            config = cls()
        elif isinstance(config, Mapping):
            config = cls.from_dict(config)
        elif not isinstance(config, cls):
            raise TypeError(f"config must be a {cls.__name__}, got {type(config).__name__}")
        from .surrogates import make_surrogate

        self.prior = prior
        self.config = config
        self.trainer = self._make_trainer(int(seed))
        self.feature_map = feature_map
        self.surrogate = make_surrogate(
            config.surrogate,
            seed=int(seed) + 3,
            feature_map=feature_map,
            **dict(config.surrogate_options),
        )
        self.reward_shift = 0.0
        self.reward_scale = 1.0
        self.round_log: list[dict[str, float]] = []
        super().__init__(
            prior.shape,
            batch_size=batch_size,
            seed=seed,
            study=study,
            device=prior.device,
            dtype=prior.dtype,
        )

    # ------------------------------------------------------------------ subclass hooks
    @abstractmethod
    def _make_trainer(self, seed: int) -> Any:
        """Build the fine-tuner (it owns ``.policy``, the sampler being fine-tuned)."""

    @abstractmethod
    def _finetune(
        self, x: torch.Tensor, y: torch.Tensor, new_round: int
    ) -> tuple[list[dict[str, float]], dict[str, float]]:
        """Fine-tune ``self.trainer`` against :meth:`reward` for one round.

        Returns the per-step logs (keys ``loss``, ``reward``, ``kl``) and extra round-log
        entries.
        """

    kl_log_name: ClassVar[str] = "kl"

    def _pretrained(self) -> DiffusionPrior:
        """The pretrained prior with the sampler's settings (η, K): the KL baseline."""
        return self.prior

    # ------------------------------------------------------------------ the round
    def reward(self, x: torch.Tensor) -> torch.Tensor:
        """The reward fine-tuned against: (optimistic(x) − shift) / scale, ``(n,)``."""
        return (self.surrogate.optimistic(x) - self.reward_shift) / self.reward_scale

    def _fit(self, x: torch.Tensor, y: torch.Tensor) -> None:
        t0 = time.perf_counter()
        new_round = self.round + 1
        # 1. Surrogate on all successful observations; 2. the reward's scale.
        self.surrogate.fit(x, y)
        if self.config.standardize_reward:
            self.reward_shift = float(y.mean())
            spread = float(y.std(unbiased=False)) if y.numel() > 1 else 0.0
            self.reward_scale = spread if spread > 1e-12 * max(1.0, abs(self.reward_shift)) else 1.0
        # 3. The algorithm's fine-tuning.
        logs, extra = self._finetune(x, y, new_round)
        self.round_log.append(
            {
                "round": float(new_round),
                "n_train": float(x.shape[0]),
                **extra,
                "steps": float(len(logs)),
                "loss": tail_mean(logs, "loss"),
                "reward": tail_mean(logs, "reward"),
                self.kl_log_name: tail_mean(logs, "kl"),
                "time_s": time.perf_counter() - t0,
            }
        )

    def _propose(self, n: int) -> Proposal:
        return sample_proposal(self.trainer.policy, n, self.generator, self.config.clip_designs)

    def _metrics(self) -> dict[str, float]:
        """``kl_to_prior``: chain KL (nats) of the current sampler to the pretrained prior,
        estimated on the trajectories of the latest round's asked points (or 32 fresh ones)."""
        from .metrics import chain_kl

        reference = self._pretrained()
        K = reference.num_inference_steps
        trajs = [
            p.traj
            for p in self._points.values()
            if p.source == "asked" and p.round == self.round and p.traj is not None
        ]
        trajs = [t for t in trajs if t.shape[0] == K + 1]
        if trajs:
            traj = torch.stack(trajs).to(self.device)
        else:
            gen = torch.Generator(device=self.device).manual_seed(
                self.seed + 7919 * (self.round + 1)
            )
            traj = self.trainer.policy.sample(32, gen, return_trajectory=True).trajectory
        est = chain_kl(self.trainer.policy.denoiser, reference, traj)
        out = {"kl_to_prior": est.kl, "kl_to_prior_stderr": est.stderr}
        if self.round_log:
            out.update({f"last_{k}": v for k, v in self.round_log[-1].items() if k != "round"})
        return out

    # ------------------------------------------------------------------ persistence
    def _spec(self) -> dict[str, Any]:
        return {
            "prior": self.prior,
            "config": self.config.to_dict(),
            "uses_feature_map": self.feature_map is not None,
        }

    @classmethod
    def _from_spec(
        cls,
        spec: dict[str, Any],
        *,
        batch_size: int,
        seed: int,
        feature_map: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> FinetunedPriorOptimizer:
        from .store import StudyError

        if spec.get("uses_feature_map") and feature_map is None:
            raise StudyError(
                "this study's surrogate was fit on a feature map, which a study folder cannot "
                "store: load it with the same map, e.g. SQDF.load(path, feature_map=fn)"
            )
        return cls(
            spec["prior"],
            batch_size=batch_size,
            seed=seed,
            config=cls.config_class.from_dict(spec["config"]),
            feature_map=feature_map,
        )

    def _extra_state(self) -> dict[str, Any]:
        return {
            "trainer": self.trainer.state_dict(),
            "surrogate": self.surrogate.state_dict(),
            "reward_shift": self.reward_shift,
            "reward_scale": self.reward_scale,
            "round_log": self.round_log,
        }

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.trainer.load_state_dict(dict(state["trainer"]))
        self.surrogate.load_state_dict(dict(state["surrogate"]))
        self.surrogate.to(self.device)
        self.reward_shift = float(state["reward_shift"])
        self.reward_scale = float(state["reward_scale"])
        self.round_log = [dict(r) for r in state["round_log"]]
