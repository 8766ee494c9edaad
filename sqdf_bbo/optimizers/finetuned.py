"""Shared base of the optimizers that fine-tune a diffusion prior against an optimistic surrogate.

SQDF (:mod:`sqdf_bbo.optimizers.sqdf`) and the SEIKO baseline (:mod:`sqdf_bbo.optimizers.seiko`)
differ only in their fine-tuner (a :class:`~sqdf_bbo.finetuning.FineTuner`). One round is
described once, by the numbered comments of :meth:`FinetunedPriorOptimizer._fit`, which runs it.

A subclass sets ``method``, ``config_class`` (a :class:`FinetunedPriorConfig` with a
``finetune`` field holding the fine-tuner's settings), ``trainer_class`` (built as
``trainer_class(prior, config.finetune, seed=seed + 1)``) and ``kl_log_name``.

Length: one class whose round, reward, conditions, diagnostics and persistence share its
surrogate, trainer and reward scale; the constraint term (:mod:`.constraint_term`) and the
proposal (:mod:`.batch`) live apart.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import torch

from sqdf_bbo.config import Range, as_config, check_fields, config_from_dict, config_to_dict
from sqdf_bbo.constraints import Constraints, as_constraints
from sqdf_bbo.diffusion.prior import DiffusionPrior
from sqdf_bbo.finetuning import FineTuner
from sqdf_bbo.finetuning.kl import chain_kl
from sqdf_bbo.migration import migrate
from sqdf_bbo.optimizers.base import Observations, Optimizer
from sqdf_bbo.optimizers.batch import Proposal, sample_proposal
from sqdf_bbo.optimizers.constraint_term import ConstraintTerm
from sqdf_bbo.study.errors import StudyError
from sqdf_bbo.surrogates import SURROGATES, Surrogate, check_options, make_surrogate
from sqdf_bbo.surrogates.conservative import check_conservative, conservative_value
from sqdf_bbo.surrogates.feasibility import check_feasibility_options

__all__ = [
    "FinetunedPriorOptimizer",
    "FinetunedPriorConfig",
    "RewardGuards",
    "SURROGATE_OBJECTIVES",
    "tail_mean",
]

SURROGATE_OBJECTIVES: tuple[str, ...] = ("optimistic", "mean", "pessimistic", "conservative")


@dataclass(frozen=True)
class RewardGuards:
    """Over-optimization guards: how a round turns the surrogate into the fine-tuning reward.

    Shared by the SQDF and SEIKO optimizer configs (their configs derive from this one).

    Attributes:
        surrogate_objective: ``"optimistic"`` (the official code: max over bootstrap heads,
            or mean + UCB bonus), ``"mean"`` (no optimism), ``"pessimistic"`` (the lower
            bound mirrored about the mean: 2·mean − optimistic) or ``"conservative"`` (the
            ensemble's mean − κ·std over heads, κ = ``conservatism``: for an offline archive,
            docs/offline.md).
        conservatism: κ of the ``"conservative"`` objective (κ = 0: the ensemble mean).
        reward_cap: cap the standardized reward at ``reward_cap`` target standard deviations
            above the best observed value (``None``: no cap). Beyond the cap the reward is
            flat, so the fine-tuner gains nothing from pushing the surrogate further.
        optimism_warning: warn when the optimistic prediction of an asked batch exceeds the
            values the oracle returned by more than this many target standard deviations.
    """

    #: The sane range of each numeric setting (checked by ``check_fields``).
    LIMITS: ClassVar[dict[str, Range]] = {
        "reward_cap": Range(0, 1e6),
        "optimism_warning": Range(0, 1e6, low_open=True),
        "conservatism": Range(0, 100),
    }

    surrogate_objective: str = "optimistic"
    conservatism: float = 1.0
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


@dataclass(frozen=True)
class FinetunedPriorConfig(RewardGuards):
    """Settings every fine-tuned-prior optimizer has; a subclass adds ``finetune``, the
    fine-tuner's settings (and may change the defaults).

    The guards ``surrogate_objective``, ``reward_cap`` and ``optimism_warning`` are
    documented in :class:`RewardGuards`.

    Attributes:
        surrogate: a name of the surrogate registry (:data:`sqdf_bbo.surrogates.SURROGATES`:
            ``"ensemble"``, bootstrap heads, optimism = max over heads; ``"ucb"``; ``"gp"``).
        surrogate_options: keyword overrides of the surrogate's config (JSON values), e.g.
            ``{"n_heads": 8}``.
        standardize_reward: fine-tune against (r̂ − ȳ)/s_y instead of raw r̂ (scale-free α).
        learn_feasibility: once a design failed, fine-tune against r + α · log P(feasible |
            x) learned from the told points (:mod:`.constraint_term`, docs/constraints.md).
        feasibility_options: :class:`~sqdf_bbo.surrogates.feasibility.FeasibilityConfig`
            overrides (JSON values), e.g. ``{"objective": "optimistic"}``.
        clip_designs: map sampler outputs to designs with ``prior.to_design`` (clamp to the
            prior's ``value_range``, if any, or its decoder), both for asked designs and inside
            every reward path (the soft-Q estimate f(x_prev) and rollouts are scored as the
            oracle would see them, as the official code clamps decoded images before its
            reward model); the stored trajectory keeps the unclamped chain.
        surrogate_reads_condition: for a conditional prior, the surrogate's input is the
            design's features followed by the condition's (a one-hot label, or the token mean
            of an embedding: :meth:`Conditioning.features`), so it can learn a reward that
            depends on the condition; ``False``: the design alone.
        progress: tqdm bars while fine-tuning.

    Old names of these settings (e.g. the fine-tuner's, flat before they moved into
    ``finetune``) are read only from stored studies and ``--set``
    (:mod:`sqdf_bbo.deprecation`).
    """

    surrogate: str = "ensemble"
    surrogate_options: Mapping[str, Any] = field(default_factory=dict)
    standardize_reward: bool = True
    learn_feasibility: bool = True
    feasibility_options: Mapping[str, Any] = field(default_factory=dict)
    clip_designs: bool = True
    surrogate_reads_condition: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        finetune = getattr(self, "finetune", None)
        if isinstance(finetune, Mapping):  # only the named settings of the default change
            object.__setattr__(
                self, "finetune", type(self).from_dict({"finetune": finetune}).finetune
            )
        check_fields(self)
        super().__post_init__()
        object.__setattr__(self, "surrogate_options", dict(self.surrogate_options))
        object.__setattr__(self, "feasibility_options", dict(self.feasibility_options))
        check_feasibility_options(self.feasibility_options)
        if self.surrogate not in SURROGATES:
            raise ValueError(
                f"surrogate {self.surrogate!r} is unknown; accepted values: {', '.join(SURROGATES)}"
            )
        check_options(SURROGATES[self.surrogate], self.surrogate_options)
        check_conservative(self.surrogate_objective, self.surrogate)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able settings, the fine-tuner's nested under ``finetune`` (``from_dict``
        rebuilds them)."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Any:
        """Settings from :meth:`to_dict` output (today's names; a stored study's old names
        go through :func:`sqdf_bbo.migration.migrate` first)."""
        return config_from_dict(cls, d)


def tail_mean(logs: list[dict[str, float]], key: str, fraction: float = 0.25) -> float:
    """Mean of ``key`` over the last ``fraction`` of per-step logs (finite values only)."""
    tail = logs[-max(1, int(len(logs) * fraction)) :] if logs else []
    vals = [m[key] for m in tail if math.isfinite(m[key])]
    return float(sum(vals) / len(vals)) if vals else math.nan


class FinetunedPriorOptimizer(Optimizer):
    """Ask/tell optimizer whose sampler is a prior fine-tuned each round against a surrogate
    (one round: :meth:`_fit`).

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
        constraints: known constraints (:class:`~sqdf_bbo.optimizers.base.Optimizer`); they
            also enter the reward (:mod:`.constraint_term`).
        surrogate: a :class:`~sqdf_bbo.surrogates.Surrogate` instance to use instead of the
            one ``config.surrogate`` names (as BoTorch takes a model); a registered class's
            settings then become ``config.surrogate`` / ``surrogate_options``.
        trainer: a fine-tuner instance (``trainer_class(prior, config, seed=...)``, or any
            object meeting :class:`~sqdf_bbo.finetuning.FineTuner`) to use instead of the one
            built from ``config.finetune``; its settings become ``config.finetune``. Both are
            code, so a study records only their classes: pass new ones of the same kind to
            ``load(path, surrogate=..., trainer=...)`` and their state is restored into them.

    A conditional prior (``prior.conditional``) makes a conditional optimizer: ``ask(n,
    conditions=...)`` takes one condition per design, the fine-tuner's chains keep them, its
    KL is to the conditional reference and the surrogate reads them
    (``surrogate_reads_condition``). Designs are ``prior.design_shape`` (a latent prior's
    decoded designs) while chains are ``prior.shape``.
    """

    config_class: ClassVar[type[FinetunedPriorConfig]]
    trainer_class: ClassVar[Callable[..., FineTuner]]
    kl_log_name: ClassVar[str] = "kl"

    def __init__(
        self,
        prior: DiffusionPrior,
        batch_size: int = 64,
        seed: int = 0,
        config: Any = None,
        study: str | Path | None = None,
        feature_map: Callable[[torch.Tensor], torch.Tensor] | None = None,
        constraints: Any = None,
        surrogate: Surrogate | None = None,
        trainer: FineTuner | None = None,
    ) -> None:
        if not isinstance(prior, DiffusionPrior):
            raise TypeError(
                f"prior must be a DiffusionPrior (e.g. sqdf_bbo.load_prior('digits')), "
                f"got {type(prior).__name__}"
            )
        seed = self.check_seed(seed)  # before any generator is seeded from it
        config = as_config(config, self.config_class)
        constraints = as_constraints(constraints)  # the base keeps the same object
        self.constraints = constraints
        self.prior = prior
        self.config = config
        self._given = _handed_in(self, prior, surrogate, trainer)  # and the config says so
        self.feature_map = feature_map
        self.conditional = prior.conditional
        self._start_model(int(seed))
        self.round_log: list[dict[str, float]] = []
        super().__init__(
            prior.design_shape,
            batch_size=batch_size,
            seed=seed,
            study=study,
            device=prior.device,
            dtype=prior.dtype,
            constraints=constraints,
            state_shape=prior.shape,
        )

    # ------------------------------------------------------------------ conditions
    def _check_conditions(self, conditions: Any, n: int) -> list[Any]:
        if self.prior.conditioning is None:
            return super()._check_conditions(conditions, n)
        return self.prior.conditioning.check_values(conditions, n)

    def _encode(self, conditions: list[Any]) -> torch.Tensor | None:
        """Network conditions ``(n, …)`` of stored conditions (``None``: unconditional)."""
        if self.prior.conditioning is None:
            return None
        return self.prior.conditioning.encode(conditions, self.device)

    @property
    def _reads_condition(self) -> bool:
        return self.conditional and self.config.surrogate_reads_condition

    def surrogate_input(self, d: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """What the surrogate reads for designs ``d (n, *design_shape)``: the designs
        themselves, or (a conditional prior with ``surrogate_reads_condition``) their
        features ``(n, F)`` (the feature map's, or the flattened designs) followed by the
        condition's ``(n, C)``."""
        if not self._reads_condition:
            return d
        if cond is None:
            raise ValueError("the surrogate reads conditions: pass the designs' conditions")
        f = self.feature_map(d) if self.feature_map is not None else d
        assert self.prior.conditioning is not None
        c = self.prior.conditioning.features(cond).to(f.dtype)
        return torch.cat([f.reshape(f.shape[0], -1), c], dim=1)

    # ------------------------------------------------------------------ the round
    def reward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """The reward fine-tuned against, ``(n,)`` for sampler outputs ``x (n, *shape)``
        (and their network conditions): :meth:`objective` + :meth:`constraint_term`."""
        r = self.objective(x, cond)
        h = self.constraint_term(x)
        return r if h is None else r + h

    def objective(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """The surrogate part of the reward, ``(n,)``: ``min((v(g(x)) − shift) / scale, cap)``
        with g = ``prior.to_design`` (when ``clip_designs``), v the surrogate objective and
        cap = the best observed value + ``reward_cap`` (standardized; no cap when
        ``reward_cap`` is ``None``). ``cond``: the network conditions ``(n, …)`` of a
        conditional prior (the surrogate may read them: :meth:`surrogate_input`)."""
        cfg = self.config
        d = self.surrogate_input(self.prior.to_design(x) if cfg.clip_designs else x, cond)
        if cfg.surrogate_objective == "mean":
            v = self.surrogate.mean(d)
        elif cfg.surrogate_objective == "optimistic":
            v = self.surrogate.optimistic(d)
        elif cfg.surrogate_objective == "conservative":  # μ − κ·σ over heads
            v = conservative_value(self.surrogate, d, cfg.conservatism)
        else:  # pessimistic: mean − (optimistic − mean)
            mean, optimistic = self.surrogate.mean_and_optimistic(d)
            v = 2.0 * mean - optimistic
        r = (v - self.reward_shift) / self.reward_scale
        if cfg.reward_cap is not None and math.isfinite(self.best_value):
            cap = (self.best_value - self.reward_shift) / self.reward_scale + cfg.reward_cap
            r = r.clamp(max=cap)
        return r

    def constraint_term(self, x: torch.Tensor) -> torch.Tensor | None:
        """h(g(x)) ``(n,)``, the α-weighted log-feasibility (:mod:`.constraint_term`), or
        ``None`` before it has a part. SQDF does not discount it."""
        if not self.constraint_model.active:
            return None
        d = self.prior.to_design(x) if self.config.clip_designs else x
        return self.constraint_model(d, float(self.trainer.alpha))

    def _refit_needed(self) -> bool:
        """New design failures teach the feasibility model: refit (when it is on)."""
        failures = sum(1 for p in self._points.values() if p.state == "failed" and not p.transient)
        return self.constraint_model.refit_needed(failures)

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
        x = self.surrogate_input(x, self._encode([p.condition for p in pts]))
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
        return pd.DataFrame(self.round_log)

    def _score_last_batch(self) -> None:
        """Step 1 of a round (:meth:`_fit`): record (and warn about) the optimism of the last batch."""
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
        """One round, run by the base at the start of ``ask`` once new values were told
        (before any value is told the sampler is the pretrained prior)."""
        t0 = time.perf_counter()
        x, y = observations.x, observations.y
        new_round = self.round + 1
        # 1. Score the previous round's batch: the surrogate's mean and optimistic predictions
        #    of the asked designs against the values the oracle returned (pred_gap,
        #    optimism_gap in target std; a warning above optimism_warning).
        self._score_last_batch()
        # 2. Fit the surrogate on every successful observation (asked and external); for a
        #    conditional prior it may read each observation's condition too.
        self.surrogate.fit(self.surrogate_input(x, self._encode(observations.conditions)), y)
        # 3. What the reward knows of feasibility: the feasibility model on the told points
        #    (design failures included) and the known constraints' temperatures.
        design = self.prior.to_design if self.config.clip_designs else (lambda d: d)
        constraint_log = self.constraint_model.fit(self.observations(include_failed=True), design)
        # 4. The reward's scale (see reward()): standardized with the observed values, so that
        #    α means the same thing for any scale of the oracle; the best value for reward_cap.
        mean_y = float(y.mean())
        spread = float(y.std(unbiased=False)) if y.numel() > 1 else 0.0
        self.value_scale = spread if spread > 1e-12 * max(1.0, abs(mean_y)) else 1.0
        self.best_value = float(y.max())
        if self.config.standardize_reward:
            self.reward_shift, self.reward_scale = mean_y, self.value_scale
        # 5. Start the fine-tuner's round with the queried chains and their values on the
        #    reward's scale (SQDF refills its replay buffer with them; SEIKO snapshots its KL
        #    reference). External observations have no chain: they shape the surrogate only.
        length = self.trainer.num_inference_steps + 1
        chains, values, _ = observations.chains(length)
        values = (values - self.reward_shift) / self.reward_scale
        conds = self._encode(observations.chain_conditions(length))
        extra = self.trainer.start_round(new_round, chains, values, conditions=conds)
        # 6. Fine-tune the sampler against reward() = objective() (the surrogate, discounted
        #    by SQDF's γ^k) + constraint_term() (the log-feasibility, undiscounted). The next
        #    ask() samples its batch from the fine-tuned policy (_propose), keeping each chain
        #    for step 5 of the next round.
        h = self.constraint_term if self.constraint_model.active else None
        logs = self.trainer.train(self.objective, progress=self.config.progress, constraint_fn=h)
        self.round_log.append(
            {
                "round": float(new_round),
                "n_train": float(x.shape[0]),
                **constraint_log,
                **extra,
                "steps": float(len(logs)),
                "loss": tail_mean(logs, "loss"),
                "reward": tail_mean(logs, "reward"),
                self.kl_log_name: tail_mean(logs, "kl"),
                "time_s": time.perf_counter() - t0,
            }
        )

    def _start_model(self, seed: int) -> None:
        """The model before any round: a fine-tuner whose policy is the pretrained prior, an
        unfitted surrogate and feasibility model and the reward's scale, seeded from ``seed``."""
        cfg, given = self.config, self._given
        again = "trainer" in self.__dict__  # _unfit: handed-in parts go back to their state then
        if given.trainer is not None:
            if again:
                given.trainer.load_state_dict(copy.deepcopy(given.trainer_state))
            self.trainer = given.trainer
        else:
            self.trainer = self.trainer_class(self.prior, cfg.finetune, seed=seed + 1)
        if given.surrogate is not None:
            if again:
                given.surrogate.load_state_dict(copy.deepcopy(given.surrogate_state))
            self.surrogate = given.surrogate
        else:
            options = dict(cfg.surrogate_options)
            # a surrogate that reads conditions gets features already made (surrogate_input)
            feature_map = None if self._reads_condition else self.feature_map
            self.surrogate = make_surrogate(
                cfg.surrogate, seed=seed + 3, feature_map=feature_map, **options
            )
        self.constraint_model = ConstraintTerm(
            self.constraints,
            cfg.learn_feasibility,
            cfg.feasibility_options,
            seed + 4,
            self.feature_map,
        )
        self.reward_shift = 0.0
        self.reward_scale = 1.0
        self.value_scale = 1.0  # observed std of the values (target std units of the gaps)
        self.best_value = math.nan  # best observed value at the last fit (for reward_cap)

    def _unfit(self) -> None:
        """Every successful observation was excluded: back to the model before any round
        (:meth:`_start_model`, seeded as at construction); ``round_log`` keeps the rounds."""
        self._start_model(self.seed)

    def _propose(self, n: int, conditions: list[Any] | None = None) -> Proposal:
        cond = None if conditions is None else self._encode(conditions)
        return sample_proposal(
            self.trainer.policy, n, self.generator, self.config.clip_designs, cond
        )

    def _metrics(self) -> dict[str, float]:
        """``kl_to_prior``: chain KL (nats) of the current sampler to the pretrained prior,
        estimated on the trajectories of the latest round's asked points (or 32 fresh ones)."""
        reference = self.trainer.reference
        K = reference.num_inference_steps
        pts = [
            p
            for p in self._points.values()
            if p.source == "asked"
            and p.round == self.round
            and p.traj is not None
            and p.traj.shape[0] == K + 1
        ]
        cond = self._encode([p.condition for p in pts]) if pts else None
        if pts:
            traj = torch.stack([p.traj for p in pts]).to(self.device)  # type: ignore[misc]
        elif self.conditional:  # no chain of this round to measure it on
            return {"kl_to_prior": math.nan, "kl_to_prior_stderr": math.nan}
        else:
            gen = torch.Generator(device=self.device).manual_seed(
                self.seed + 7919 * (self.round + 1)
            )
            traj = self.trainer.policy.sample(32, gen, return_trajectory=True).trajectory
        est = chain_kl(self.trainer.policy.denoiser, reference, traj, cond=cond)
        out = {"kl_to_prior": est.kl, "kl_to_prior_stderr": est.stderr}
        gaps = self.batch_optimism(self.round)
        out["pred_gap"], out["optimism_gap"] = gaps["pred_gap"], gaps["optimism_gap"]
        if self.round_log:
            out.update({f"last_{k}": v for k, v in self.round_log[-1].items() if k != "round"})
        return out

    # ------------------------------------------------------------------ persistence
    def _spec(self) -> dict[str, Any]:
        given = {  # instances handed in are code: the study records their classes
            f"given_{k}": type(v).__qualname__
            for k, v in (("surrogate", self._given.surrogate), ("trainer", self._given.trainer))
            if v is not None
        }
        return {
            "prior": self.prior,
            "config": self.config.to_dict(),
            "uses_feature_map": self.feature_map is not None,
            **given,
        }

    @classmethod
    def _from_spec(
        cls,
        spec: dict[str, Any],
        *,
        batch_size: int,
        seed: int,
        feature_map: Callable[[torch.Tensor], torch.Tensor] | None = None,
        constraints: Constraints | Any = None,
        surrogate: Surrogate | None = None,
        trainer: FineTuner | None = None,
    ) -> FinetunedPriorOptimizer:
        if spec.get("uses_feature_map") and feature_map is None:
            raise StudyError(
                "this study's surrogate was fit on a feature map, which a study folder cannot "
                "store: load it with the same map, e.g. SQDF.load(path, feature_map=fn)"
            )
        for key, given in (("surrogate", surrogate), ("trainer", trainer)):
            if spec.get(f"given_{key}") and given is None:
                raise StudyError(
                    f"this study was made with a {key} instance handed in "
                    f"({spec[f'given_{key}']}), which a study folder cannot store: load it "
                    f"with a new one of the same kind, e.g. SQDF.load(path, {key}=...); its "
                    "state is restored from the study"
                )
        # old setting names (with a DeprecationWarning); D converts an old α
        stored = migrate(cls.config_class, dict(spec["config"]), dim=spec["prior"].dim)
        # a study made before failures taught anything keeps running as it was made
        stored.setdefault("learn_feasibility", False)
        return cls(
            spec["prior"],
            batch_size=batch_size,
            seed=seed,
            config=cls.config_class.from_dict(stored),
            feature_map=feature_map,
            constraints=constraints,
            surrogate=surrogate,
            trainer=trainer,
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
            **self.constraint_model.state_dict(),
        }

    def _settings_changed(self, changes: dict[str, tuple[Any, Any]]) -> None:
        """Changed settings reach the parts that restored their own copy: the surrogate
        takes the new ``surrogate_options`` (its fitted model stays until the next round
        refits it); the replay buffer keeps the capacity it was made with."""
        if "finetune.buffer_capacity" in changes:
            raise ValueError(
                "buffer_capacity cannot change in an existing study (its replay buffer keeps "
                "the capacity it was made with)"
            )
        if "surrogate_options" in changes:
            options = dict(self.config.surrogate_options)
            self.surrogate.config = self.surrogate.config_class(**options)

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
        self.constraint_model.load_state_dict(state, self.device)


@dataclass
class _HandedIn:
    """Instances handed to the constructor, with their states then (``_unfit`` returns to them)."""

    surrogate: Surrogate | None = None
    trainer: FineTuner | None = None
    surrogate_state: dict[str, Any] = field(default_factory=dict)
    trainer_state: dict[str, Any] = field(default_factory=dict)


def _handed_in(
    opt: FinetunedPriorOptimizer,
    prior: DiffusionPrior,
    surrogate: Surrogate | None,
    trainer: FineTuner | None,
) -> _HandedIn:
    """Check the instances handed in and make ``opt.config`` describe them: a trainer's
    settings become ``config.finetune``; a registered surrogate's class and settings become
    ``config.surrogate`` / ``surrogate_options``."""
    if surrogate is not None and not isinstance(surrogate, Surrogate):
        raise TypeError(f"surrogate must be a Surrogate, got {type(surrogate).__name__}")
    if trainer is not None:
        reference = getattr(trainer, "reference", None)
        if not isinstance(reference, DiffusionPrior) or reference.shape != prior.shape:
            raise ValueError(
                "trainer must be a fine-tuner (e.g. SQDFTrainer(prior, config)) of a prior of "
                f"shape {prior.shape}, the optimizer's"
            )
        expected = type(opt.config.finetune)
        if not isinstance(trainer.config, expected):
            raise TypeError(
                f"{type(opt).__name__} takes a trainer whose config is a {expected.__name__}, "
                f"got {type(trainer.config).__name__}"
            )
        opt.config = dataclasses.replace(opt.config, finetune=trainer.config)
    if surrogate is not None:
        name = next((n for n, c in SURROGATES.items() if type(surrogate) is c), None)
        if name is not None:
            default = config_to_dict(surrogate.config_class())
            mine = config_to_dict(surrogate.config)
            options = {k: v for k, v in mine.items() if default.get(k) != v}
            opt.config = dataclasses.replace(opt.config, surrogate=name, surrogate_options=options)
    return _HandedIn(
        surrogate=surrogate,
        trainer=trainer,
        surrogate_state={} if surrogate is None else copy.deepcopy(surrogate.state_dict()),
        trainer_state={} if trainer is None else copy.deepcopy(trainer.state_dict()),
    )
