"""SEIKO fine-tuning step (Uehara et al., ICML 2024): reward back-propagated through the chain.

Notation (ours, as in the SQDF design notes):
    θ        fine-tuned ε-network (the policy); p_prev the frozen copy of the
             PREVIOUS round's policy (SEIKO's KL reference);
    K        denoising steps, transition i maps state x_i to x_{i+1}, x_K = x_0;
    r̂        the optimistic surrogate reward (UCB or bootstrap max);
    α        KL weight (same convention as SQDF: exact Gaussian KL, summed over
             dimensions, with the ½).

One gradient step on a batch of b fresh chains:

    1. draw the truncation length k_bp ~ Uniform{bp_min … bp_max} (randomized truncation);
    2. run the K-step sampler of p_θ with reparameterized noise
           x_{i+1} = μ_θ(x_i) + σ_i z_i,   z_i ~ N(0, I),
       and stop gradients through the state x_i for i < K − k_bp (the last k_bp
       steps are differentiated through; the parameters get gradients at every step);
    3. chain KL to the previous round's model along the policy's own trajectory,
           KL = Σ_i ‖μ_θ(x_i) − μ_prev(x_i)‖² / (2 σ_i²)     (steps with σ_i = 0 skipped);
    4. loss = −mean_b r̂(x_0) + α · mean_b KL; Adam step with gradient clipping.

This differs from SQDF, which never differentiates through the sampling chain:
SQDF scores a single transition with a training-free soft-Q value.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..config import check_fields

__all__ = ["SEIKOTrainConfig", "SEIKOTrainer"]


@dataclass(frozen=True)
class SEIKOTrainConfig:
    """Hyper-parameters of the SEIKO fine-tuner.

    Args:
        alpha: KL weight α (our convention: exact Gaussian KL; official = α·D/2).
        steps: gradient steps per round.
        batch_size: chains per gradient step.
        lr: Adam learning rate.
        grad_clip: max global gradient norm (``None``: no clipping).
        bp_min, bp_max: the number of final steps back-propagated through is drawn
            uniformly from {bp_min, …, bp_max} at every gradient step.
    """

    alpha: float = 0.01
    steps: int = 40
    batch_size: int = 32
    lr: float = 1e-3
    grad_clip: float | None = 1.0
    bp_min: int = 1
    bp_max: int = 5

    def __post_init__(self) -> None:
        check_fields(self)
        if not self.alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")
        if int(self.steps) < 0 or int(self.batch_size) < 1:
            raise ValueError(
                f"steps must be >= 0 and batch_size >= 1, got {self.steps}, {self.batch_size}"
            )
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if not 1 <= int(self.bp_min) <= int(self.bp_max):
            raise ValueError(
                f"need 1 <= bp_min <= bp_max, got bp_min={self.bp_min}, bp_max={self.bp_max}"
            )


class SEIKOTrainer:
    """Owns the fine-tuned copy of a prior and its optimizer state across rounds.

    Args:
        prior: the pretrained ``DiffusionPrior`` (not modified; a copy is trained).
        config: :class:`SEIKOTrainConfig`.
        seed: seeds the generator of chains and truncation draws.
    """

    def __init__(self, prior, config: SEIKOTrainConfig, seed: int = 0) -> None:
        self.config = config
        self.pretrained = prior
        self.policy = prior.clone()
        for p in self.policy.denoiser.parameters():
            p.requires_grad_(True)
        self.previous: torch.nn.Module = self._frozen_copy(self.policy.denoiser)
        self.generator = torch.Generator(device=prior.device).manual_seed(int(seed))
        self._opt = torch.optim.Adam(self.policy.denoiser.parameters(), lr=config.lr)

    @staticmethod
    def _frozen_copy(module: torch.nn.Module) -> torch.nn.Module:
        out = copy.deepcopy(module).eval()
        for p in out.parameters():
            p.requires_grad_(False)
        return out

    def start_round(self) -> None:
        """Snapshot the current policy as the KL reference (SEIKO: the previous round's model)."""
        self.previous = self._frozen_copy(self.policy.denoiser)

    def _loss(self, reward_fn: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, torch.Tensor]:
        pol = self.policy
        cfg = self.config
        K = pol.num_inference_steps
        g = self.generator
        # 1. Randomized truncation: differentiate through the last k_bp states only.
        k_bp = int(torch.randint(cfg.bp_min, cfg.bp_max + 1, (1,), generator=g))
        first_tracked = max(0, K - k_bp)
        x = pol.initial_noise(cfg.batch_size, g)
        kl = torch.zeros(cfg.batch_size, device=x.device, dtype=x.dtype)
        for i in range(K):
            x_in = x if i >= first_tracked else x.detach()
            # 2. Reparameterized step of the policy.
            out = pol.step_mean(x_in, i)
            sigma = out.sigma
            z = torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)
            # 3. Exact Gaussian step KL to the previous round's model (skipped where σ = 0).
            if float(pol.sigmas[i]) > 1e-6:
                mu_prev = pol.step_mean(x_in, i, denoiser=self.previous).mean
                d2 = (out.mean - mu_prev).pow(2).reshape(x.shape[0], -1).sum(1)
                kl = kl + d2 / (2.0 * float(pol.sigmas[i]) ** 2)
            x = out.mean + sigma * z
        r = reward_fn(x)
        if r.shape != (cfg.batch_size,):
            raise ValueError(
                f"reward_fn must return shape ({cfg.batch_size},), got {tuple(r.shape)}"
            )
        # 4. Loss.
        loss = -r.mean() + cfg.alpha * kl.mean()
        return {"loss": loss, "reward": r.detach().mean(), "kl": kl.detach().mean(), "k_bp": k_bp}

    def train(
        self,
        reward_fn: Callable[[torch.Tensor], torch.Tensor],
        steps: int | None = None,
        progress: bool = False,
    ) -> list[dict[str, float]]:
        """Run ``steps`` (default ``config.steps``) gradient steps; per-step metric dicts."""
        from ..progress import progress_bar

        n = self.config.steps if steps is None else int(steps)
        params = [p for p in self.policy.denoiser.parameters() if p.requires_grad]
        self.policy.denoiser.train()
        log: list[dict[str, float]] = []
        for _ in progress_bar(range(n), progress=progress, desc="SEIKO fine-tune", leave=False):
            out = self._loss(reward_fn)
            self._opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            gn = (
                torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
                if self.config.grad_clip is not None
                else torch.sqrt(sum((p.grad**2).sum() for p in params if p.grad is not None))
            )
            self._opt.step()
            log.append(
                {
                    "loss": float(out["loss"].detach()),
                    "reward": float(out["reward"]),
                    "kl": float(out["kl"]),
                    "grad_norm": float(gn),
                    "k_bp": float(out["k_bp"]),
                }
            )
        self.policy.denoiser.eval()
        return log

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Policy and previous-round weights, Adam moments and the generator (tensors only)."""
        out = {f"policy/{k}": v for k, v in self.policy.denoiser.state_dict().items()}
        out.update({f"previous/{k}": v for k, v in self.previous.state_dict().items()})
        for idx, st in self._opt.state_dict()["state"].items():
            for key, val in st.items():
                out[f"optim/{idx}/{key}"] = torch.as_tensor(val).detach().cpu().clone()
        out["generator"] = self.generator.get_state().clone()
        return {k: v.detach().cpu().clone() for k, v in out.items()}

    def load_state_dict(self, d: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state_dict` output."""

        def part(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix) :]: v for k, v in d.items() if k.startswith(prefix)}

        self.policy.denoiser.load_state_dict(part("policy/"))
        self.previous.load_state_dict(part("previous/"))
        opt_state: dict[int, dict[str, torch.Tensor]] = {}
        for k, v in part("optim/").items():
            idx, key = k.split("/", 1)
            opt_state.setdefault(int(idx), {})[key] = v
        if opt_state:
            groups = self._opt.state_dict()["param_groups"]
            self._opt.load_state_dict({"state": opt_state, "param_groups": groups})
        self.generator.set_state(d["generator"])
