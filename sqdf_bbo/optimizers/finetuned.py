"""Shared base of the optimizers that fine-tune a diffusion prior against an optimistic surrogate.

SQDF (:mod:`sqdf_bbo.optimizers.sqdf`) and the SEIKO baseline (:mod:`sqdf_bbo.optimizers.seiko`)
differ only in how one round fine-tunes the sampler. Everything else lives here:

0. score the previous round's batch: the surrogate's mean and optimistic predictions of the
   asked designs against the values the oracle returned (``pred_gap``, ``optimism_gap`` in
   target standard deviations; a warning when the optimistic gap exceeds
   ``optimism_warning``);
1. fit the surrogate on every successful observation (asked and external);
2. the reward (:meth:`FinetunedPriorOptimizer.reward`): the sampler output mapped to the
   design the oracle would see (``prior.to_design``: clamped to the value range), scored by
   the surrogate objective (``optimistic``, ``mean`` or ``pessimistic``), standardized with
   the observed values so that α means the same thing for any scale of the oracle
   (``standardize_reward=False`` keeps raw values), and optionally capped ``reward_cap``
   standard deviations above the best observed value;
3. ``_finetune`` (the subclass's one required hook) fine-tunes ``self.trainer.policy``;
4. ``_propose`` samples the batch from the fine-tuned policy, keeping each trajectory;
5. ``_metrics`` estimates the chain KL of the current sampler to the pretrained prior.

A subclass sets ``method``, ``config_class`` (a frozen dataclass deriving from
:class:`RewardGuards`, with ``to_dict``/``from_dict`` and the fields ``surrogate``,
``surrogate_options``, ``standardize_reward``, ``clip_designs``), builds ``self.trainer`` in
``_make_trainer`` (an object with ``.policy``, ``state_dict()`` and ``load_state_dict()``)
and implements ``_finetune``.
"""

from __future__ import annotations

import math
import time
import warnings
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from sqdf_bbo.config import as_config
from sqdf_bbo.diffusion.prior import DiffusionPrior
from sqdf_bbo.optimizers.base import Observations, Optimizer, Proposal

__all__ = [
    "FinetunedPriorOptimizer",
    "RewardGuards",
    "SURROGATE_OBJECTIVES",
    "sample_proposal",
    "tail_mean",
]

SURROGATE_OBJECTIVES: tuple[str, ...] = ("optimistic", "mean", "pessimistic")


@dataclass(frozen=True)
class RewardGuards:
    """Over-optimization guards: how a round turns the surrogate into the fine-tuning reward.

    Shared by the SQDF and SEIKO optimizer configs (their configs derive from this one).

    Attributes:
        surrogate_objective: ``"optimistic"`` (the official code: max over bootstrap heads,
            or mean + UCB bonus), ``"mean"`` (no optimism) or ``"pessimistic"`` (the lower
            bound mirrored about the mean: 2·mean − optimistic).
        reward_cap: cap the standardized reward at ``reward_cap`` target standard deviations
            above the best observed value (``None``: no cap). Beyond the cap the reward is
            flat, so the fine-tuner gains nothing from pushing the surrogate further.
        optimism_warning: warn when the optimistic prediction of an asked batch exceeds the
            values the oracle returned by more than this many target standard deviations.
    """

    surrogate_objective: str = "optimistic"
    reward_cap: float | None = None
    optimism_warning: float = 3.0

    def __post_init__(self) -> None:
        if self.surrogate_objective not in SURROGATE_OBJECTIVES:
            raise ValueError(
                f"surrogate_objective {self.surrogate_objective!r} is unknown; accepted values: "
                f"{', '.join(SURROGATE_OBJECTIVES)}"
            )
        if self.reward_cap is not None and not (
            math.isfinite(self.reward_cap) and self.reward_cap >= 0
        ):
            raise ValueError(f"reward_cap must be finite and >= 0 or None, got {self.reward_cap}")
        if not self.optimism_warning > 0:
            raise ValueError(f"optimism_warning must be > 0, got {self.optimism_warning}")


def sample_proposal(
    prior: DiffusionPrior, n: int, generator: torch.Generator, clip: bool
) -> Proposal:
    """n designs of ``prior`` (network in eval mode) with their trajectories ``(n, K+1, *shape)``;
    designs mapped by ``prior.to_design`` (clamped to the value range) when ``clip`` (the
    trajectory keeps the chain)."""
    net = prior.denoiser
    was_training = net.training
    net.eval()
    try:
        out = prior.sample(n, generator, return_trajectory=True)
    finally:
        net.train(was_training)
    x = prior.to_design(out.x) if clip else out.x
    return Proposal(x, out.trajectory)


def tail_mean(logs: list[dict[str, float]], key: str, fraction: float = 0.25) -> float:
    """Mean of ``key`` over the last ``fraction`` of per-step logs (finite values only)."""
    tail = logs[-max(1, int(len(logs) * fraction)) :] if logs else []
    vals = [m[key] for m in tail if math.isfinite(m[key])]
    return float(sum(vals) / len(vals)) if vals else math.nan


class FinetunedPriorOptimizer(Optimizer):
    """Ask/tell optimizer whose sampler is a prior fine-tuned each round against a surrogate.

    Args:
        prior: the pretrained :class:`~sqdf_bbo.diffusion.prior.DiffusionPrior` (not modified).
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
        seed = self.check_seed(seed)  # before any generator is seeded from it
        config = as_config(config, self.config_class)
        from sqdf_bbo.surrogates import make_surrogate

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
        self.value_scale = 1.0  # observed std of the values (target std units of the gaps)
        self.best_value = math.nan  # best observed value at the last fit (for reward_cap)
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
        self, observations: Observations, new_round: int
    ) -> tuple[list[dict[str, float]], dict[str, float]]:
        """Fine-tune ``self.trainer`` against :meth:`reward` for one round (the surrogate is
        already fitted to ``observations``).

        Returns the per-step logs (keys ``loss``, ``reward``, ``kl``) and extra round-log
        entries.
        """

    kl_log_name: ClassVar[str] = "kl"

    def _pretrained(self) -> DiffusionPrior:
        """The pretrained prior with the sampler's settings (η, K): the KL baseline."""
        return self.prior

    # ------------------------------------------------------------------ the round
    def reward(self, x: torch.Tensor) -> torch.Tensor:
        """The reward fine-tuned against, ``(n,)`` for sampler outputs ``x (n, *shape)``:
        ``min((v(g(x)) − shift) / scale, cap)`` with g = ``prior.to_design`` (when
        ``clip_designs``), v the surrogate objective and cap = the best observed value
        + ``reward_cap`` (standardized; no cap when ``reward_cap`` is ``None``)."""
        cfg = self.config
        d = self.prior.to_design(x) if cfg.clip_designs else x
        if cfg.surrogate_objective == "mean":
            v = self.surrogate.mean(d)
        elif cfg.surrogate_objective == "optimistic":
            v = self.surrogate.optimistic(d)
        else:  # pessimistic: mean − (optimistic − mean)
            mean, optimistic = self.surrogate.mean_and_optimistic(d)
            v = 2.0 * mean - optimistic
        r = (v - self.reward_shift) / self.reward_scale
        if cfg.reward_cap is not None and math.isfinite(self.best_value):
            cap = (self.best_value - self.reward_shift) / self.reward_scale + cfg.reward_cap
            r = r.clamp(max=cap)
        return r

    def batch_optimism(self, round: int) -> dict[str, float]:
        """How far the current surrogate's predictions of round ``round``'s asked batch lie
        above the values the oracle returned, in target standard deviations.

        Returns ``pred_gap`` (mean prediction − realized mean), ``optimism_gap`` (optimistic
        prediction − realized mean) and ``n_scored`` (complete asked points of that round);
        NaN gaps when there is nothing to score. Meaningful until the next round refits the
        surrogate (the base scores each batch right before that refit).
        """
        pts = [
            p
            for p in self._points.values()
            if p.round == round and p.source == "asked" and p.state == "complete"
        ]
        if not pts or not self.surrogate.fitted:
            return {"pred_gap": math.nan, "optimism_gap": math.nan, "n_scored": float(len(pts))}
        x = torch.stack([p.x for p in pts]).to(self.device)
        realized = sum(p.value for p in pts) / len(pts)
        with torch.no_grad():
            mean, optimistic = self.surrogate.mean_and_optimistic(x)
        scale = self.value_scale
        return {
            "pred_gap": (float(mean.double().mean()) - realized) / scale,
            "optimism_gap": (float(optimistic.double().mean()) - realized) / scale,
            "n_scored": float(len(pts)),
        }

    def round_table(self) -> Any:
        """One row per fine-tuning round (``pandas.DataFrame``): training size, steps, loss,
        reward, KL, time and, once its batch was told, the batch's ``pred_gap`` and
        ``optimism_gap`` (target standard deviations)."""
        import pandas as pd

        return pd.DataFrame(self.round_log)

    def _score_last_batch(self) -> None:
        """Step 0 of a round: record (and warn about) the optimism of the last batch."""
        if not self.round_log or not self.surrogate.fitted:
            return
        gaps = self.batch_optimism(self.round)
        self.round_log[-1].update(gaps)
        gap = gaps["optimism_gap"]
        if math.isfinite(gap) and gap > self.config.optimism_warning:
            warnings.warn(
                f"{type(self).__name__}: the surrogate's optimistic prediction of round "
                f"{self.round}'s batch was {gap:.1f} target std above the values the oracle "
                f"returned (mean prediction {gaps['pred_gap']:+.1f} std): the fine-tuner is "
                "exploiting the surrogate; consider a larger alpha, "
                "surrogate_objective='mean' or a reward_cap",
                RuntimeWarning,
                stacklevel=4,
            )

    def _fit(self, observations: Observations) -> None:
        t0 = time.perf_counter()
        x, y = observations.x, observations.y
        new_round = self.round + 1
        self._score_last_batch()
        # 1. Surrogate on all successful observations; 2. the reward's scale.
        self.surrogate.fit(x, y)
        mean_y = float(y.mean())
        spread = float(y.std(unbiased=False)) if y.numel() > 1 else 0.0
        self.value_scale = spread if spread > 1e-12 * max(1.0, abs(mean_y)) else 1.0
        self.best_value = float(y.max())
        if self.config.standardize_reward:
            self.reward_shift, self.reward_scale = mean_y, self.value_scale
        # 3. The algorithm's fine-tuning.
        logs, extra = self._finetune(observations, new_round)
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
        from sqdf_bbo.finetuning.kl import chain_kl

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
        gaps = self.batch_optimism(self.round)
        out["pred_gap"], out["optimism_gap"] = gaps["pred_gap"], gaps["optimism_gap"]
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
        from sqdf_bbo.study.store import StudyError

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
            "value_scale": self.value_scale,
            "best_value": self.best_value,
            "round_log": self.round_log,
        }

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.trainer.load_state_dict(dict(state["trainer"]))
        self.surrogate.load_state_dict(dict(state["surrogate"]))
        self.surrogate.to(self.device)
        self.reward_shift = float(state["reward_shift"])
        self.reward_scale = float(state["reward_scale"])
        # studies saved before the over-optimization guards: the reward scale is the std
        self.value_scale = float(state.get("value_scale", self.reward_scale))
        self.best_value = float(state.get("best_value", math.nan))
        self.round_log = [dict(r) for r in state["round_log"]]
