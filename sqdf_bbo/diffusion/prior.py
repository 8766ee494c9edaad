"""The diffusion prior: an ε-network plus a DDIM sampler, in the conventions of docs/design.md §1.

Length: one class, whose sampler, x0 estimators and save/load share the schedule and the
notation below; the networks and their files are in ``networks`` and ``io``, conditions and
guidance in ``conditioning``.

Conditional priors (``conditioning=``): every network call takes the batch's conditions
``cond`` (the network's input, :meth:`Conditioning.encode`) and, with classifier-free
guidance, returns the guided ε̃; a conditional prior called without ``cond`` uses the null
condition (unconditional samples) when it has one.

Notation (paper symbol → name here):

    K            num_inference_steps       number of denoising steps
    t_K … t_1    timesteps                 diffusers' DDIM timesteps, noisiest first
    j = 0 … K    state index               trajectory position; state j sits at timesteps[j],
                                            state K is x_0 (ᾱ = final ᾱ, 1 by default)
    i = 0 … K−1  transition index          transition i maps state i to state i + 1
    k = K−1−i    steps to go               denoising steps left after transition i
    ᾱ            alpha_bars[j]             cumulative α of state j
    σ_t          sigmas[i]                 DDIM noise scale of transition i (η-scaled)
    ε(x_t, t)    denoiser(x, t)            ε-prediction network (or v / x0, converted)

Formulas (DDIM with η):

    x̂0(x_t)   = (x_t − √(1−ᾱ_t) ε) / √ᾱ_t
    σ_t²      = η² (1−ᾱ_prev)/(1−ᾱ_t) · (1 − ᾱ_t/ᾱ_prev)
    μ(x_t)    = √ᾱ_prev x̂0 + √(1−ᾱ_prev−σ_t²) ε
    x_prev    = μ(x_t) + σ_t z,   z ~ N(0, I)
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from sqdf_bbo.checksums import verify_checksums, write_checksums
from sqdf_bbo.diffusion.conditioning import Conditioning
from sqdf_bbo.diffusion.io import load_module, save_module
from sqdf_bbo.diffusion.networks import call_denoiser, expand_like
from sqdf_bbo.diffusion.units import DesignUnits

__all__ = [
    "DiffusionPrior",
    "SampleOutput",
    "StepOutput",
    "X0Method",
    "SUPPORTED_PREDICTION_TYPES",
    "call_denoiser",
]

X0Method = Literal["tweedie", "consistency", "ddim"]
SUPPORTED_PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
X0_METHODS: tuple[str, ...] = ("tweedie", "consistency", "ddim")
_FORMAT = "sqdf-bbo-prior"


@dataclass(frozen=True)
class SampleOutput:
    """What :meth:`DiffusionPrior.sample` returns.

    Attributes:
        x: final designs x_0, shape ``(n, *shape)``.
        trajectory: ``(n, K + 1, *shape)`` with ``trajectory[:, 0] = x_T`` and
            ``trajectory[:, K] = x_0``; ``None`` unless requested.
    """

    x: torch.Tensor
    trajectory: torch.Tensor | None = None


@dataclass(frozen=True)
class StepOutput:
    """One denoising transition's Gaussian ``N(mean, sigma² I)``.

    Attributes:
        mean: μ(x_t), shape ``(n, *shape)``.
        sigma: σ_t, shape ``(n, 1, …, 1)`` (broadcasts against ``mean``).
        eps: the ε prediction, shape ``(n, *shape)``.
        x0: the Tweedie estimate x̂0(x_t), shape ``(n, *shape)``.
    """

    mean: torch.Tensor
    sigma: torch.Tensor
    eps: torch.Tensor
    x0: torch.Tensor


class DiffusionPrior:
    """A pretrained diffusion model used as the prior of natural designs.

    Args:
        denoiser: an ε-prediction network under the call contract (diffusers
            ``UNet2DModel`` or any ``nn.Module`` with ``forward(x, t)``). The
            scheduler's ``prediction_type`` may also be ``v_prediction`` or
            ``sample``; outputs are converted to ε.
        scheduler: a diffusers scheduler (its config and ``alphas_cumprod``
            are used); a ``DDIMScheduler`` is built from its config. Default:
            ``DDIMScheduler(clip_sample=False)`` with 1000 train steps.
        shape: design shape, e.g. ``(2,)`` or ``(1, 8, 8)``.
        eta: DDIM η (1.0 = stochastic, 0.0 = deterministic ODE).
        num_inference_steps: K.
        value_range: ``(low, high)`` of valid designs, or ``None`` if unbounded.
        consistency: optional consistency model ``f(x_t, t) → x0`` (see
            :mod:`sqdf_bbo.diffusion.consistency`).
        conditioning: optional :class:`~sqdf_bbo.diffusion.conditioning.Conditioning`: the
            prior is conditional (class labels or embeddings reach the network, optionally
            with classifier-free guidance).
        decoder: optional design map ``(n, *shape) → (n, *design_shape)`` used by :meth:`to_design`
            instead of the clamp to ``value_range`` (e.g. the one-hot decoder of a sequence
            prior, :class:`~sqdf_bbo.diffusion.sequence.OneHotDecoder`); a registered network
            so that ``save``/``load`` rebuild it.
        name: a label for reports.
        units: optional :class:`~sqdf_bbo.diffusion.units.DesignUnits`: the numbers the
            study's CSV files carry for each design (e.g. the airfoil prior's Kulfan
            parameters); the optimizers never see them.
    """

    def __init__(
        self,
        denoiser: nn.Module,
        scheduler: Any | None = None,
        *,
        shape: tuple[int, ...],
        eta: float = 1.0,
        num_inference_steps: int = 50,
        value_range: tuple[float, float] | None = (-1.0, 1.0),
        consistency: nn.Module | None = None,
        decoder: nn.Module | None = None,
        name: str = "custom",
        conditioning: Conditioning | None = None,
        units: DesignUnits | None = None,
    ) -> None:
        from diffusers import DDIMScheduler  # lazy: diffusers is slow to import

        if not isinstance(denoiser, nn.Module):
            raise TypeError(f"denoiser must be a torch nn.Module, got {type(denoiser).__name__}")
        shape = tuple(int(s) for s in shape)
        if not shape or any(s < 1 for s in shape):
            raise ValueError(f"shape must be a non-empty tuple of positive ints, got {shape}")
        if not 0.0 <= float(eta) <= 1.0:
            raise ValueError(f"eta must lie in [0, 1], got {eta}")
        if int(num_inference_steps) < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        if decoder is not None and not isinstance(decoder, nn.Module):
            raise TypeError(f"decoder must be a torch nn.Module, got {type(decoder).__name__}")
        if conditioning is not None and not isinstance(conditioning, Conditioning):
            raise TypeError(
                f"conditioning must be a Conditioning, got {type(conditioning).__name__}"
            )
        if value_range is not None and not float(value_range[0]) < float(value_range[1]):
            raise ValueError(f"value_range must be (low, high) with low < high, got {value_range}")
        if scheduler is None:
            scheduler = DDIMScheduler(clip_sample=False)
        config = dict(scheduler.config)
        ptype = config.get("prediction_type", "epsilon")
        if ptype not in SUPPORTED_PREDICTION_TYPES:
            raise ValueError(
                f"scheduler prediction_type {ptype!r} is not supported; "
                f"accepted values: {', '.join(SUPPORTED_PREDICTION_TYPES)}"
            )
        if config.get("thresholding", False):
            raise ValueError("scheduler thresholding is not supported; set thresholding=False")
        self.scheduler = DDIMScheduler.from_config(config)
        self.scheduler.set_timesteps(int(num_inference_steps))
        self.denoiser = denoiser
        self.consistency = consistency
        self.decoder = decoder
        self.conditioning = conditioning
        if units is not None and not isinstance(units, DesignUnits):
            raise TypeError(f"units must be DesignUnits, got {type(units).__name__}")
        self.units = units
        self.shape = shape
        self.eta = float(eta)
        self.num_inference_steps = int(num_inference_steps)
        self.value_range = (
            None if value_range is None else (float(value_range[0]), float(value_range[1]))
        )
        self.name = name
        self.prediction_type: str = ptype
        self._build_schedule()

    # ------------------------------------------------------------------ schedule
    def _build_schedule(self) -> None:
        """Per-state ᾱ (K+1,) and per-transition σ (K,), exactly as diffusers computes them."""
        sched = self.scheduler
        ts = sched.timesteps.long()
        stride = sched.config.num_train_timesteps // self.num_inference_steps
        prev = ts - stride
        ab_all = sched.alphas_cumprod
        ab_t = ab_all[ts]
        ab_prev = torch.where(prev >= 0, ab_all[prev.clamp(min=0)], sched.final_alpha_cumprod)
        var = (1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev)
        self.timesteps: torch.Tensor = ts  # (K,)
        self.alpha_bars: torch.Tensor = torch.cat([ab_t, ab_prev[-1:]])  # (K+1,)
        self._alpha_bar_prev = ab_prev  # (K,)
        self._unit_sigmas: torch.Tensor = var.clamp(min=0).sqrt()  # (K,), σ for η = 1
        self.sigmas: torch.Tensor = self.eta * self._unit_sigmas  # (K,)

    @property
    def dim(self) -> int:
        """Number of design dimensions D = prod(shape)."""
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def design_shape(self) -> tuple[int, ...]:
        """Shape of one design (what :meth:`to_design` returns): ``shape`` unless the decoder
        declares another (``decoder.design_shape``, e.g. a latent decoder's image shape)."""
        declared = getattr(self.decoder, "design_shape", None)
        return self.shape if declared is None else tuple(int(s) for s in declared)

    @property
    def device(self) -> torch.device:
        p = next(self.denoiser.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        p = next(self.denoiser.parameters(), None)
        return p.dtype if p is not None else torch.float32

    def to(self, device: torch.device | str) -> DiffusionPrior:
        """Move the networks to ``device`` (in place) and return ``self``."""
        self.denoiser.to(device)
        if self.consistency is not None:
            self.consistency.to(device)
        if self.decoder is not None:
            self.decoder.to(device)
        if self.conditioning is not None:
            self.conditioning.to(device)
        return self

    def clone(self) -> DiffusionPrior:
        """A deep copy with its own denoiser weights (the consistency model is shared, frozen)."""
        other = copy.copy(self)
        other.denoiser = copy.deepcopy(self.denoiser)
        return other

    def with_settings(
        self, *, eta: float | None = None, num_inference_steps: int | None = None
    ) -> DiffusionPrior:
        """A prior sharing these networks with another η or K."""
        return DiffusionPrior(
            self.denoiser,
            self.scheduler,
            shape=self.shape,
            eta=self.eta if eta is None else eta,
            num_inference_steps=self.num_inference_steps
            if num_inference_steps is None
            else num_inference_steps,
            value_range=self.value_range,
            consistency=self.consistency,
            decoder=self.decoder,
            name=self.name,
            conditioning=self.conditioning,
            units=self.units,
        )

    # ------------------------------------------------------------------ checks
    def check_designs(self, x: torch.Tensor, what: str = "x") -> torch.Tensor:
        """Raise a clear error unless ``x`` has shape ``(n, *shape)``."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim != len(self.shape) + 1 or tuple(x.shape[1:]) != self.shape:
            raise ValueError(
                f"{what} must have shape (n, {', '.join(map(str, self.shape))}); "
                f"got {tuple(x.shape)}"
            )
        return x

    def to_design(self, x: torch.Tensor) -> torch.Tensor:
        """The design an oracle sees for sampler output ``x (n, *shape)``: ``decoder(x)`` when
        the prior has a decoder, else clamped to ``value_range`` (unchanged when the prior is
        unbounded). Differentiable; the clamp's gradient is zero where a coordinate lies
        outside the range.

        This is the one map from the sampler's space to the design space: ``ask`` applies
        it to the proposed batch and every reward path (SQDF's soft-Q estimate, SEIKO's
        chain end, on-policy rollouts) applies it before the surrogate, so a fine-tuner is
        never rewarded for values the oracle cannot see. A standardization inverse for
        tabular priors or a latent decoder would go here.
        """
        if self.decoder is not None:
            return self.decoder(x)
        if self.value_range is None:
            return x
        return x.clamp(*self.value_range)

    def _index(self, idx: int | torch.Tensor, n: int, upper: int, what: str) -> torch.Tensor:
        # schedule tables live on the CPU: index them with CPU indices
        idx_t = torch.as_tensor(idx, dtype=torch.long).reshape(-1).cpu()
        if idx_t.numel() == 1:
            idx_t = idx_t.expand(n)
        if idx_t.numel() != n:
            raise ValueError(
                f"{what} must be an int or have shape ({n},), got {tuple(idx_t.shape)}"
            )
        if (idx_t < 0).any() or (idx_t > upper).any():
            raise ValueError(f"{what} must lie in [0, {upper}], got {idx_t.tolist()}")
        return idx_t

    # ------------------------------------------------------------------ one step
    @property
    def conditional(self) -> bool:
        """Whether the prior takes conditions."""
        return self.conditioning is not None

    def encode_conditions(self, values: Any, n: int | None = None) -> torch.Tensor:
        """The network's input ``(n, …)`` on this prior's device for user conditions (labels,
        prompts or embeddings: :meth:`Conditioning.encode`); ``TypeError`` for an
        unconditional prior."""
        if self.conditioning is None:
            raise TypeError(f"prior {self.name!r} is unconditional: it takes no conditions")
        return self.conditioning.encode(self.conditioning.check_values(values, n), self.device)

    def _cond(self, cond: torch.Tensor | None, n: int, device: torch.device) -> torch.Tensor | None:
        """``cond`` checked against the batch size, or the null condition of a conditional
        prior called without one."""
        if self.conditioning is None:
            if cond is not None:
                raise TypeError(f"prior {self.name!r} is unconditional: it takes no conditions")
            return None
        if cond is None:
            return self.conditioning.null(n, device)
        if cond.shape[0] != n:
            raise ValueError(f"got conditions for {cond.shape[0]} states, expected {n}")
        return cond.to(device)

    def epsilon(
        self,
        x: torch.Tensor,
        j: int | torch.Tensor,
        denoiser: nn.Module | None = None,
        cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """ε(x_t, t_j[, c]) for states ``j < K``; x: ``(n, *shape)`` → ``(n, *shape)``;
        ``cond``: the network's conditions ``(n, …)`` (guided when the prior guides)."""
        self.check_designs(x)
        j_t = self._index(j, x.shape[0], self.num_inference_steps - 1, "state index j")
        t = self.timesteps[j_t].to(x.device)
        net = denoiser if denoiser is not None else self.denoiser
        c = self._cond(cond, x.shape[0], x.device)
        out = call_denoiser(net, x, t, self.conditioning, c)
        if self.prediction_type == "epsilon":
            return out
        ab = expand_like(self.alpha_bars[j_t].to(x.device), x)
        if self.prediction_type == "v_prediction":
            return ab.sqrt() * out + (1 - ab).sqrt() * x
        return (x - ab.sqrt() * out) / (1 - ab).sqrt()  # "sample"

    def tweedie(
        self,
        x: torch.Tensor,
        j: int | torch.Tensor,
        denoiser: nn.Module | None = None,
        cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x̂0(x_t) = (x_t − √(1−ᾱ_t) ε) / √ᾱ_t; identity where ``j == K``. Shapes ``(n, *shape)``."""
        j_t = self._index(j, x.shape[0], self.num_inference_steps, "state index j")
        done = j_t == self.num_inference_steps
        if bool(done.all()):
            return x
        jj = j_t.clamp(max=self.num_inference_steps - 1)
        ab = expand_like(self.alpha_bars[jj].to(x.device), x)
        x0 = (x - (1 - ab).sqrt() * self.epsilon(x, jj, denoiser, cond)) / ab.sqrt()
        return torch.where(expand_like(done.to(x.device), x).bool(), x, x0)

    def step_mean(
        self,
        x: torch.Tensor,
        i: int | torch.Tensor,
        denoiser: nn.Module | None = None,
        eta: float | None = None,
        eps: torch.Tensor | None = None,
        cond: torch.Tensor | None = None,
    ) -> StepOutput:
        """The Gaussian of transition ``i`` from state x_t = x (shape ``(n, *shape)``).

        ``denoiser`` defaults to this prior's; pass a fine-tuned copy's network
        to get its μ_θ with the same schedule. ``eta`` overrides η (0 gives the
        deterministic ODE step). ``eps`` (shape of ``x``) replaces the network's
        ε(x_t, t) — e.g. one computed without a graph, so that the step is
        differentiable in x_t but not in the network (SEIKO's truncation). ``cond``: the
        network's conditions ``(n, …)`` of a conditional prior.
        """
        self.check_designs(x)
        i_t = self._index(i, x.shape[0], self.num_inference_steps - 1, "transition index i")
        dev = x.device
        # 1. ε and x̂0 at state i.
        if eps is None:
            eps = self.epsilon(x, i_t, denoiser, cond)
        ab_t = expand_like(self.alpha_bars[i_t].to(dev), x)
        ab_prev = expand_like(self._alpha_bar_prev[i_t].to(dev), x)
        x0 = (x - (1 - ab_t).sqrt() * eps) / ab_t.sqrt()
        if self.scheduler.config.clip_sample:
            r = self.scheduler.config.clip_sample_range
            x0 = x0.clamp(-r, r)
        # 2. σ_t (η-scaled; σ = 0 for the ODE).
        scale = self.eta if eta is None else float(eta)
        sigma = expand_like((scale * self._unit_sigmas[i_t]).to(dev), x)
        # 3. μ = √ᾱ_prev x̂0 + √(1−ᾱ_prev−σ²) ε.
        direction = (1 - ab_prev - sigma**2).clamp(min=0).sqrt()
        mean = ab_prev.sqrt() * x0 + direction * eps
        return StepOutput(mean=mean, sigma=sigma, eps=eps, x0=x0)

    def step(
        self,
        x: torch.Tensor,
        i: int | torch.Tensor,
        noise: torch.Tensor | None = None,
        denoiser: nn.Module | None = None,
        cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x_prev = μ(x_t) + σ_t z for transition ``i``; ``noise`` z of shape ``(n, *shape)``."""
        out = self.step_mean(x, i, denoiser, cond=cond)
        if noise is None:
            return out.mean
        return out.mean + out.sigma * noise

    # ------------------------------------------------------------------ sampling
    def initial_noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """x_T ~ N(0, I), shape ``(n, *shape)``, drawn from ``generator``."""
        return torch.randn(
            (n, *self.shape), generator=generator, device=self.device, dtype=self.dtype
        )

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        *,
        return_trajectory: bool = False,
        denoiser: nn.Module | None = None,
        x_T: torch.Tensor | None = None,
        batch_size: int = 1024,
        cond: torch.Tensor | None = None,
    ) -> SampleOutput:
        """Draw ``n`` designs by the K-step DDIM sampler (no gradients).

        Args:
            n: number of designs.
            generator: the ``torch.Generator`` every draw comes from (on the
                prior's device); ``None`` uses a fresh unseeded one.
            return_trajectory: also return x_T … x_0, shape ``(n, K+1, *shape)``.
            denoiser: sample from this network instead (a fine-tuned copy).
            x_T: optional starting noise ``(n, *shape)``.
            batch_size: designs per network call.
            cond: the network's conditions ``(n, …)`` of a conditional prior
                (:meth:`encode_conditions`); default its null condition.
        """
        if int(n) < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        n = int(n)
        if generator is None:
            generator = torch.Generator(device=self.device)
            generator.seed()
        x = self.initial_noise(n, generator) if x_T is None else self.check_designs(x_T, "x_T")
        c = self._cond(cond, n, x.device)
        states = [x] if return_trajectory else None
        with torch.no_grad():
            for i in range(self.num_inference_steps):
                z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
                x = torch.cat(
                    [
                        self.step(
                            x[s : s + batch_size],
                            i,
                            z[s : s + batch_size],
                            denoiser,
                            None if c is None else c[s : s + batch_size],
                        )
                        for s in range(0, n, batch_size)
                    ]
                )
                if states is not None:
                    states.append(x)
        traj = torch.stack(states, dim=1) if states is not None else None
        return SampleOutput(x=x, trajectory=traj)

    # ------------------------------------------------------------------ x0 estimators
    def ddim_x0(
        self, x: torch.Tensor, j: int | torch.Tensor, m: int, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``ddim-m``: m deterministic DDIM (η = 0) steps of this prior from state j, then Tweedie.

        Differentiable in ``x``. Where fewer than m steps remain, it runs to x_0
        (m = all remaining steps gives the deterministic sampler's end point).
        Shapes ``(n, *shape)``.
        """
        if int(m) < 1:
            raise ValueError(f"ddim-m needs m >= 1, got {m}")
        K = self.num_inference_steps
        j_t = self._index(j, x.shape[0], K, "state index j").to(x.device)
        for _ in range(int(m)):
            active = j_t < K
            if not bool(active.any()):
                break
            new = self.step_mean(x, j_t.clamp(max=K - 1), eta=0.0, cond=cond).mean
            x = torch.where(expand_like(active, x).bool(), new, x)
            j_t = j_t + active.long()
        return self.tweedie(x, j_t, cond=cond)

    def consistency_x0(self, x: torch.Tensor, j: int | torch.Tensor) -> torch.Tensor:
        """One call of the consistency model at state j; identity where ``j == K``."""
        if self.consistency is None:
            raise ValueError(
                f"prior {self.name!r} has no consistency model; distill one with "
                "sqdf_bbo.distill_consistency(prior) or use x0 method 'tweedie' or 'ddim'"
            )
        K = self.num_inference_steps
        j_t = self._index(j, x.shape[0], K, "state index j").to(x.device)
        done = j_t == K
        if bool(done.all()):
            return x
        t = self.timesteps.to(x.device)[j_t.clamp(max=K - 1)]
        x0 = call_denoiser(self.consistency, x, t)
        return torch.where(expand_like(done, x).bool(), x, x0)

    def x0_estimate(
        self,
        x: torch.Tensor,
        j: int | torch.Tensor,
        method: str = "tweedie",
        m: int = 1,
        cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x0 estimate f(x) of the frozen prior at state j (identity at j = K).

        ``method``: ``tweedie`` (one ε call), ``consistency`` (one consistency-model
        call; unconditional) or ``ddim`` (``ddim-m``, m deterministic steps). Shapes
        ``(n, *shape)``; ``cond``: the conditions of a conditional prior.
        """
        if method == "tweedie":
            return self.tweedie(x, j, cond=cond)
        if method == "consistency":
            if self.conditioning is not None:
                raise ValueError(
                    f"prior {self.name!r} is conditional and its consistency model is not: "
                    "use x0 method 'tweedie' or 'ddim'"
                )
            return self.consistency_x0(x, j)
        if method == "ddim":
            return self.ddim_x0(x, j, m, cond)
        raise ValueError(f"unknown x0 method {method!r}; accepted values: {', '.join(X0_METHODS)}")

    # ------------------------------------------------------------------ save / load
    def save(self, path: str | Path) -> Path:
        """Write weights (safetensors or diffusers format) and config (JSON) to ``path``.

        Last, ``path/checksums.json`` records the sha256 of every file in the folder;
        :meth:`load` verifies it.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.scheduler.save_pretrained(path / "scheduler")
        meta: dict[str, Any] = {
            "format": _FORMAT,
            "version": 1,
            "name": self.name,
            "shape": list(self.shape),
            "eta": self.eta,
            "num_inference_steps": self.num_inference_steps,
            "value_range": None if self.value_range is None else list(self.value_range),
            "denoiser": save_module(self.denoiser, path / "denoiser"),
            "consistency": None
            if self.consistency is None
            else save_module(self.consistency, path / "consistency"),
            "decoder": None
            if self.decoder is None
            else save_module(self.decoder, path / "decoder"),
        }
        if self.conditioning is not None:  # absent key: an unconditional prior (as before)
            meta["conditioning"] = save_module(self.conditioning, path / "conditioning")
        if self.units is not None:
            meta["units"] = self.units.to_dict()
        (path / "prior.json").write_text(json.dumps(meta, indent=2))
        write_checksums(path)
        return path

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        denoiser: nn.Module | None = None,
        device: torch.device | str = "cpu",
    ) -> DiffusionPrior:
        """Load a prior written by :meth:`save`.

        ``denoiser`` supplies the module instance for networks of a class this
        package cannot rebuild by itself (its weights are then loaded into it).

        The files are first checked against ``checksums.json`` when the folder has one
        (:class:`~sqdf_bbo.checksums.ChecksumError`, a ``ValueError``, names a file that
        is missing or differs); folders saved before checksums existed load unverified.
        Weights are read from safetensors only, never unpickled.
        """
        from diffusers import DDIMScheduler  # lazy: diffusers is slow to import

        path = Path(path)
        meta_file = path / "prior.json"
        if not meta_file.is_file():
            raise FileNotFoundError(f"{path} is not a saved prior: {meta_file.name} is missing")
        verify_checksums(path)
        meta = json.loads(meta_file.read_text())
        if meta.get("format") != _FORMAT:
            raise ValueError(f"{meta_file} is not a {_FORMAT} file")
        scheduler = DDIMScheduler.from_pretrained(path / "scheduler")
        net = load_module(meta["denoiser"], path / "denoiser", instance=denoiser).to(device)
        cm = None
        if meta.get("consistency"):
            cm = load_module(meta["consistency"], path / "consistency").to(device)
        decoder = None
        if meta.get("decoder"):
            decoder = load_module(meta["decoder"], path / "decoder").to(device)
        conditioning = None
        if meta.get("conditioning"):
            conditioning = load_module(meta["conditioning"], path / "conditioning").to(device)
        vr = meta.get("value_range")
        return cls(
            net,
            scheduler,
            shape=tuple(meta["shape"]),
            eta=meta["eta"],
            num_inference_steps=meta["num_inference_steps"],
            value_range=None if vr is None else (vr[0], vr[1]),
            consistency=cm,
            decoder=decoder,
            name=meta.get("name", "custom"),
            conditioning=conditioning,
            units=None if meta.get("units") is None else DesignUnits.from_dict(meta["units"]),
        )
