"""SEIKO fine-tuning step (Uehara et al., ICML 2024): reward back-propagated through the chain.

Notation (ours, as in the SQDF design notes):
    θ        fine-tuned ε-network (the policy); p_prev the frozen copy of the
             PREVIOUS round's policy (SEIKO's KL reference);
    K        denoising steps, transition i maps state x_i to x_{i+1}, x_K = x_0;
    r̂        the optimistic surrogate reward (UCB or bootstrap max);
    α        KL weight (same convention as SQDF: exact Gaussian KL, summed over
             dimensions, with the ½).

One gradient step on a batch of b fresh chains:

    1. run the K-step sampler of p_θ with reparameterized noise
           x_{i+1} = μ_θ(x_i) + σ_i z_i,   z_i ~ N(0, I),
       with the randomized truncation of ``truncation``:
       - ``"official"`` (default; the official SEIKO code, ``online_main.py``): at every
         step i independently the ε-predictions (policy and reference) are detached unless
         t ≤ i for a fresh t ~ Uniform{0, …, K}, i.e. step i keeps its network gradient
         with probability (i + 1)/(K + 1) (about half the steps, early ones included). The
         states x_i are never detached, so the reward gradient reaches every step through
         the chain;
       - ``"last-k"`` (v0.1): draw k_bp ~ Uniform{bp_min … bp_max} once per gradient step
         and stop gradients through the states x_i for i < K − k_bp (the parameters get
         gradients at every step);
    2. chain KL to the previous round's model along the policy's own trajectory,
           KL = Σ_i ‖μ_θ(x_i) − μ_prev(x_i)‖² / (2 σ_i²)     (steps with σ_i = 0 skipped);
    3. loss = −mean_b r̂(x_0) + α · mean_b KL; Adam step with gradient clipping.

The official loss is ``loss_coeff·|r − target| + kl_weight·Σ_i mean_d Δ²/(2σ²)`` with
``loss_coeff = kl_weight = 0.01`` and a target (10) above every reachable reward, i.e.
−r + 1·KL_mean; in our convention (KL summed over the D dimensions) that is α = 1/D
(``SEIKOTrainConfig(kl_weight=a)`` is converted with α = a/D,
:func:`~sqdf_bbo.finetuning.kl.official_alpha_to_ours` with ``convention="seiko"``).

This differs from SQDF, which never differentiates through the sampling chain:
SQDF scores a single transition with a training-free soft-Q value.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from sqdf_bbo.diffusion.prior import DiffusionPrior
from sqdf_bbo.finetuning.checkpoint import frozen_copy, load_optimizer_tensors, optimizer_tensors
from sqdf_bbo.finetuning.configs import TRUNCATIONS, SEIKOTrainConfig
from sqdf_bbo.progress import progress_bar

__all__ = ["SEIKOTrainConfig", "SEIKOTrainer", "TRUNCATIONS", "keep_probability"]


def keep_probability(i: int, num_steps: int) -> float:
    """Probability that step i of K keeps its network gradient under the official rule:
    t ~ Uniform{0, …, K}, kept when t ≤ i, so (i + 1)/(K + 1)."""
    return (i + 1) / (num_steps + 1)


class SEIKOTrainer:
    """Owns the fine-tuned copy of a prior and its optimizer state across rounds.

    It meets the fine-tuner contract of :class:`sqdf_bbo.finetuning.FineTuner`.

    Args:
        prior: the pretrained ``DiffusionPrior`` (not modified; a copy is trained).
        config: :class:`SEIKOTrainConfig` (resolved for ``prior``: α set).
        seed: seeds the generator of chains and truncation draws.

    Attributes:
        config: the resolved settings; alpha: the KL weight α the loss uses (our
        convention, from ``config.kl_weight``); reference: the pretrained prior (the baseline of the
        chain KL the optimizer reports); policy: the prior being fine-tuned; previous: the
        frozen copy of the previous round's network (SEIKO's KL reference).
    """

    def __init__(
        self, prior: DiffusionPrior, config: SEIKOTrainConfig | None = None, seed: int = 0
    ) -> None:
        if prior.conditional:
            raise ValueError(
                f"prior {prior.name!r} is conditional; SEIKO fine-tunes unconditional priors "
                "only (use SQDF, which takes conditions)"
            )
        config = config if config is not None else SEIKOTrainConfig()
        self.config = config = config.resolve(prior)
        self.alpha = config.alpha_for(prior.dim)
        self.reference = prior
        self.policy = prior.clone()
        for p in self.policy.denoiser.parameters():
            p.requires_grad_(True)
        self.previous: torch.nn.Module = frozen_copy(self.policy.denoiser)
        self.generator = torch.Generator(device=prior.device).manual_seed(int(seed))
        self._opt = torch.optim.Adam(self.policy.denoiser.parameters(), lr=config.lr)

    @property
    def num_inference_steps(self) -> int:
        return self.policy.num_inference_steps

    def start_round(
        self,
        round: int | None = None,
        chains: torch.Tensor | None = None,
        values: torch.Tensor | None = None,
        conditions: torch.Tensor | None = None,
    ) -> dict[str, float]:
        """Snapshot the current policy as the KL reference (SEIKO: the previous round's model).

        SEIKO samples fresh chains at every step: the round's number and the queried chains
        and values are accepted (the fine-tuner contract) and not used.
        """
        self.previous = frozen_copy(self.policy.denoiser)
        return {}

    def _keep(self, i: int, num_steps: int, k_bp: int) -> bool:
        """Whether step i keeps its network gradient this gradient step."""
        if self.config.truncation == "official":
            t = torch.randint(
                0, num_steps + 1, (1,), generator=self.generator, device=self.generator.device
            )
            return int(t) <= i
        return i >= num_steps - k_bp

    def _loss(
        self,
        reward_fn: Callable[[torch.Tensor], torch.Tensor],
        constraint_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        pol = self.policy
        cfg = self.config
        K = pol.num_inference_steps
        g = self.generator
        k_bp = (
            int(torch.randint(cfg.bp_min, cfg.bp_max + 1, (1,), generator=g, device=g.device))
            if cfg.truncation == "last-k"
            else 0
        )
        x = pol.initial_noise(cfg.chains_per_step, g)
        kl = torch.zeros(cfg.chains_per_step, device=x.device, dtype=x.dtype)
        kept = 0
        for i in range(K):
            keep = self._keep(i, K, k_bp)
            kept += int(keep)
            # 1. Truncation: "last-k" detaches the states before its window (parameters keep
            #    their gradients); "official" computes ε without a graph on dropped steps
            #    (the state x_i keeps its graph either way).
            x_in = x if cfg.truncation == "official" or keep else x.detach()
            eps = eps_prev = None
            if cfg.truncation == "official" and not keep:
                with torch.no_grad():
                    eps = pol.epsilon(x_in, i)
                    eps_prev = pol.epsilon(x_in, i, self.previous)
            # 2. Reparameterized step of the policy.
            out = pol.step_mean(x_in, i, eps=eps)
            z = torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)
            # 3. Exact Gaussian step KL to the previous round's model (skipped where σ = 0).
            if float(pol.sigmas[i]) > 1e-6:
                mu_prev = pol.step_mean(x_in, i, denoiser=self.previous, eps=eps_prev).mean
                d2 = (out.mean - mu_prev).pow(2).reshape(x.shape[0], -1).sum(1)
                kl = kl + d2 / (2.0 * float(pol.sigmas[i]) ** 2)
            x = out.mean + out.sigma * z
        r = reward_fn(x)
        if constraint_fn is not None:  # SEIKO has no discount: the constraint term adds on
            r = r + constraint_fn(x)
        if r.shape != (cfg.chains_per_step,):
            raise ValueError(
                f"reward_fn must return shape ({cfg.chains_per_step},), got {tuple(r.shape)}"
            )
        # 4. Loss.
        loss = -r.mean() + self.alpha * kl.mean()
        return {"loss": loss, "reward": r.detach().mean(), "kl": kl.detach().mean(), "kept": kept}

    def train(
        self,
        reward_fn: Callable[[torch.Tensor], torch.Tensor],
        steps: int | None = None,
        *,
        progress: bool = False,
        constraint_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> list[dict[str, float]]:
        """Run ``steps`` (default ``config.steps``) gradient steps; per-step metric dicts.
        ``constraint_fn`` (optional, ``(n, *shape) -> (n,)``) is added to the reward."""
        n = self.config.steps if steps is None else int(steps)
        params = [p for p in self.policy.denoiser.parameters() if p.requires_grad]
        self.policy.denoiser.train()
        log: list[dict[str, float]] = []
        for _ in progress_bar(range(n), progress=progress, desc="SEIKO fine-tune", leave=False):
            out = self._loss(reward_fn, constraint_fn)
            self._opt.zero_grad(set_to_none=True)
            if out["loss"].requires_grad:
                out["loss"].backward()
                gn = (
                    torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
                    if self.config.grad_clip is not None
                    else torch.sqrt(sum((p.grad**2).sum() for p in params if p.grad is not None))
                )
                self._opt.step()
            else:  # every step dropped its ε gradient (probability K!/(K+1)^K): no update
                gn = torch.zeros(())
            log.append(
                {
                    "loss": float(out["loss"].detach()),
                    "reward": float(out["reward"]),
                    "kl": float(out["kl"]),
                    "grad_norm": float(gn),
                    "kept_steps": float(out["kept"]),
                }
            )
        self.policy.denoiser.eval()
        return log

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Policy and previous-round weights, Adam moments and the generator (tensors only)."""
        out = {f"policy/{k}": v for k, v in self.policy.denoiser.state_dict().items()}
        out.update({f"previous/{k}": v for k, v in self.previous.state_dict().items()})
        out.update({f"optim/{k}": v for k, v in optimizer_tensors(self._opt).items()})
        out["generator"] = self.generator.get_state().clone()
        return {k: v.detach().cpu().clone() for k, v in out.items()}

    def load_state_dict(self, d: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state_dict` output."""

        def part(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix) :]: v for k, v in d.items() if k.startswith(prefix)}

        self.policy.denoiser.load_state_dict(part("policy/"))
        self.previous.load_state_dict(part("previous/"))
        load_optimizer_tensors(self._opt, part("optim/"))
        self.generator.set_state(d["generator"])
