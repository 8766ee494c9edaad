"""LaMBO-2 (Gruver et al. 2023, guided discrete diffusion), our variant through ask/tell.

Written from the algorithm of pytorch-cortex 0.0.4 (``cortex/optim/generative/_lambo.py``),
which installs here but ships no Ehrlich task (its tokenizers, model trees and Hydra configs
are built for proteins); docs/sequences.md says what differs. Designs are one-hot sequences
``(L, v)`` (:mod:`sqdf_bbo.sequences`).

The model (:class:`LaMBONet`): token embeddings (v states + a mask token) → a convolutional
trunk → per-position features h ``(n, L, d)``, read by two heads: a masked-language-model head
(token logits per position) and a value head (mean-pooled h → MLP → the standardized value).
Each round it is trained further (Adam) on the MLM loss of the natural sequences and every
feasible observed sequence plus the regression loss of the observed values.

One ``ask`` of n designs (after values were told; the first ask returns natural sequences):

1. base: the n best observed sequences (cycling when fewer were observed);
2. edit positions: the objective's saliency per position (first-order occlusion: the change of
   the value head when a position's embedding becomes the mask embedding, (e − e_mask)·∇_e f),
   normalized by its absolute sum, softmax with temperature ``attr_temp``, then
   ``num_mutations`` positions drawn without replacement;
3. those positions are masked (each with probability 1/√(1 + round), at least one), the trunk
   features h of the masked sequence are computed, and a shift δ of h at the masked
   positions is optimized by Adam for ``guidance_steps`` steps on
   ``kl_weight · KL(p_δ ‖ p_0) − (1 − kl_weight) · f(h + δ)``
   (p: the MLM head's token distribution at the masked positions, p_0 before guidance);
4. before guidance and after each step, tokens are sampled from p_δ at the masked positions;
   a sample replaces the sequence's current one when its score
   ``(1 − kl_weight) · f + kl_weight · PLL`` (PLL: mean log-probability of the edited tokens,
   each masked in turn) is at least the current score.

Every draw comes from ``self.generator``; the network starts from weights seeded by ``seed``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sqdf_bbo.config import as_config, check_fields, config_to_dict
from sqdf_bbo.finetuning.checkpoint import load_optimizer_tensors, optimizer_tensors
from sqdf_bbo.optimizers.base import Optimizer, Proposal
from sqdf_bbo.sequences import decode_tokens, one_hot_designs

__all__ = ["LaMBO2", "LaMBO2Config", "LaMBONet"]


@dataclass(frozen=True)
class LaMBO2Config:
    """Settings of :class:`LaMBO2` (cortex's defaults where it has one).

    Attributes:
        num_mutations: edit positions per sequence and round (cortex: 2).
        guidance_steps: Adam steps on the feature shift δ (cortex: 16).
        guidance_lr: their step size (cortex: 1.0).
        kl_weight: weight of the KL to the unguided token distribution (cortex: 0.5).
        attr_temp: softmax temperature of the saliency (cortex: 0.125).
        width, depth: the network's trunk.
        train_steps, train_batch, lr: model training per round (Adam).
        mask_prob: share of positions masked in the MLM loss.
    """

    num_mutations: int = 2
    guidance_steps: int = 16
    guidance_lr: float = 1.0
    kl_weight: float = 0.5
    attr_temp: float = 0.125
    width: int = 64
    depth: int = 4
    train_steps: int = 200
    train_batch: int = 64
    lr: float = 1e-3
    mask_prob: float = 0.15

    def __post_init__(self) -> None:
        check_fields(self)
        if min(self.num_mutations, self.train_steps, self.train_batch, self.depth) < 1:
            raise ValueError("num_mutations, train_steps, train_batch and depth must be >= 1")
        if self.guidance_steps < 0 or not 0 <= self.kl_weight < 1 or self.attr_temp <= 0:
            raise ValueError("need guidance_steps >= 0, 0 <= kl_weight < 1 and attr_temp > 0")
        if self.width < 8 or self.width % 8 or not 0 < self.mask_prob < 1 or self.lr <= 0:
            raise ValueError("need width a multiple of 8, mask_prob in (0, 1) and lr > 0")


class LaMBONet(nn.Module):
    """Embeddings → conv trunk → features ``(n, L, d)``; MLM head and value head on them."""

    def __init__(self, num_states: int, width: int, depth: int) -> None:
        super().__init__()
        self.mask_token = num_states
        self.embed = nn.Embedding(num_states + 1, width)
        self.trunk = nn.ModuleList(
            nn.Sequential(nn.GroupNorm(8, width), nn.SiLU(), nn.Conv1d(width, width, 5, padding=2))
            for _ in range(depth)
        )
        self.mlm = nn.Linear(width, num_states)
        self.value = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, 1))

    def features(self, emb: torch.Tensor) -> torch.Tensor:
        """Trunk features ``(n, L, d)`` of token embeddings ``(n, L, d)``."""
        h = emb.transpose(1, 2)
        for block in self.trunk:
            h = h + block(h)
        return h.transpose(1, 2)

    def objective(self, h: torch.Tensor) -> torch.Tensor:
        """Predicted (standardized) value ``(n,)`` of features ``(n, L, d)``."""
        return self.value(h.mean(1)).squeeze(-1)


class LaMBO2(Optimizer):
    """Our LaMBO-2 variant (module docstring).

    Args:
        initial: natural sequences, integer tokens ``(m, L)``: the first ask returns them
            (cycling) and the MLM is trained on them.
        num_states: v.
        batch_size: designs per ``ask()``.
        seed: seeds the network's initialization and ``self.generator``.
        config: :class:`LaMBO2Config` or a mapping of its fields.
        study: folder to write the study through to.
    """

    method = "lambo2"

    def __init__(
        self,
        initial: torch.Tensor | Sequence[Sequence[int]],
        num_states: int,
        batch_size: int = 128,
        seed: int = 0,
        config: LaMBO2Config | Mapping[str, Any] | None = None,
        study: str | Path | None = None,
    ) -> None:
        init = torch.as_tensor(initial)
        if init.ndim != 2 or init.shape[0] < 1 or init.is_floating_point():
            raise ValueError(
                f"initial must be integer tokens of shape (m, L), got {tuple(init.shape)}"
            )
        if int(num_states) < 2 or int(init.min()) < 0 or int(init.max()) >= int(num_states):
            raise ValueError(f"initial tokens must lie in [0, num_states={num_states})")
        seed = self.check_seed(seed)
        self.initial = init.long().cpu()
        self.num_states = int(num_states)
        self.config = cfg = as_config(config, LaMBO2Config)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = LaMBONet(self.num_states, cfg.width, cfg.depth)
        self._opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        self._shift, self._scale = 0.0, 1.0
        self._n_initial_used = 0
        super().__init__(
            self.initial.shape[1:] + (self.num_states,),
            batch_size=batch_size,
            seed=seed,
            study=study,
        )

    # ------------------------------------------------------------------ model
    def _fit(self, observations) -> None:
        """Train the network further on the MLM and value losses (module docstring)."""
        cfg, g = self.config, self.generator
        y = observations.y.double().cpu()
        x = decode_tokens(observations.x.cpu())
        self._shift = float(y.mean())
        self._scale = (
            float(y.std(unbiased=False)) if y.numel() > 1 and float(y.std()) > 1e-12 else 1.0
        )
        z = ((y - self._shift) / self._scale).float()
        seqs = torch.cat([self.initial, x])
        self.net.train()
        for _ in range(cfg.train_steps):
            # 1. MLM loss on natural and observed sequences.
            i = torch.randint(seqs.shape[0], (cfg.train_batch,), generator=g, device=g.device).cpu()
            tok = seqs[i]
            mask = torch.rand(tok.shape, generator=g, device=g.device).cpu() < cfg.mask_prob
            inp = torch.where(mask, torch.full_like(tok, self.net.mask_token), tok)
            logits = self.net.mlm(self.net.features(self.net.embed(inp)))
            mlm = nn.functional.cross_entropy(logits[mask], tok[mask]) if bool(mask.any()) else 0.0
            # 2. Value regression on observed sequences.
            j = torch.randint(x.shape[0], (cfg.train_batch,), generator=g, device=g.device).cpu()
            pred = self.net.objective(self.net.features(self.net.embed(x[j])))
            loss = mlm + (pred - z[j]).pow(2).mean()
            self._opt.zero_grad(set_to_none=True)
            loss.backward()
            self._opt.step()
        self.net.eval()

    def _pll(self, tok: torch.Tensor, edit: torch.Tensor) -> torch.Tensor:
        """Mean log-probability ``(n,)`` of the tokens at ``edit`` ``(n, L)`` bool, each masked in turn."""
        total = torch.zeros(tok.shape[0])
        count = edit.sum(1).clamp(min=1)
        for pos in edit.any(0).nonzero().flatten().tolist():
            inp = tok.clone()
            inp[:, pos] = self.net.mask_token
            logp = self.net.mlm(self.net.features(self.net.embed(inp)))[:, pos].log_softmax(-1)
            total += torch.where(
                edit[:, pos], logp.gather(1, tok[:, pos : pos + 1]).squeeze(1), 0.0
            )
        return total / count

    def _score(self, tok: torch.Tensor, edit: torch.Tensor) -> torch.Tensor:
        w = self.config.kl_weight
        f = self.net.objective(self.net.features(self.net.embed(tok)))
        return (1 - w) * f + w * self._pll(tok, edit)

    # ------------------------------------------------------------------ one ask
    def _propose(self, n: int) -> Proposal:
        obs = self.observations()
        if obs.y.numel() == 0:  # 0. natural sequences first
            idx = (torch.arange(n) + self._n_initial_used) % self.initial.shape[0]
            self._n_initial_used += n
            return Proposal(
                one_hot_designs(self.initial[idx], self.num_states).to(self.device, self.dtype)
            )
        cfg, g = self.config, self.generator
        # 1. Base: the n best observed sequences.
        order = torch.argsort(obs.y.cpu(), descending=True)
        base = decode_tokens(obs.x.cpu())[order[torch.arange(n) % order.numel()]]
        L = base.shape[1]
        # 2. Edit positions by first-order occlusion saliency.
        emb = self.net.embed(base).detach().requires_grad_(True)
        grad = torch.autograd.grad(self.net.objective(self.net.features(emb)).sum(), emb)[0]
        null = self.net.embed.weight[self.net.mask_token].detach()
        score = ((emb.detach() - null) * grad).sum(
            -1
        )  # (n, L): f(x) − f(x with l masked), 1st order
        score = score / (score.abs().sum(-1, keepdim=True) + 1e-6)
        probs = (score / cfg.attr_temp).softmax(-1)
        k = min(cfg.num_mutations, L)
        picked = torch.multinomial(probs, k, replacement=False, generator=g)
        frac = 1.0 / math.sqrt(1 + self.round)
        keep = torch.rand(picked.shape, generator=g, device=g.device).cpu() < frac
        keep[:, 0] = True
        edit = torch.zeros(n, L, dtype=torch.bool)
        rows = torch.arange(n)[:, None].expand_as(picked)
        edit[rows[keep], picked[keep]] = True
        # 3. Guided infill: δ on the trunk features at the masked positions.
        masked = torch.where(edit, torch.full_like(base, self.net.mask_token), base)
        with torch.no_grad():
            h = self.net.features(self.net.embed(masked))
            base_logp = self.net.mlm(h).log_softmax(-1)
        delta = torch.zeros_like(h, requires_grad=True)
        adam = torch.optim.Adam([delta], lr=cfg.guidance_lr, betas=(0.09, 0.0999))
        current, cur_score = base.clone(), None
        for step in range(cfg.guidance_steps + 1):
            hd = h + delta * edit[..., None]
            logits = self.net.mlm(hd)
            # 4. Sample tokens at the masked positions; keep improvements.
            with torch.no_grad():
                p = logits.softmax(-1).reshape(-1, self.num_states)
                draw = torch.multinomial(p, 1, generator=g).reshape(n, L)
                cand = torch.where(edit, draw, base)
                s = self._score(cand, edit)
                if cur_score is None:
                    cur_score = self._score(current, edit)
                better = s >= cur_score
                current = torch.where(better[:, None], cand, current)
                cur_score = torch.where(better, s, cur_score)
            if step == cfg.guidance_steps:
                break
            logp = logits.log_softmax(-1)
            kl = (logp.exp() * (logp - base_logp)).sum(-1)[edit].mean()
            loss = cfg.kl_weight * kl - (1 - cfg.kl_weight) * self.net.objective(hd).mean()
            adam.zero_grad(set_to_none=True)
            loss.backward()
            adam.step()
        return Proposal(one_hot_designs(current, self.num_states).to(self.device, self.dtype))

    # ------------------------------------------------------------------ persistence
    def _spec(self) -> dict[str, Any]:
        return {
            "initial": self.initial.tolist(),
            "num_states": self.num_states,
            "config": config_to_dict(self.config),
        }

    def _extra_state(self) -> dict[str, Any]:
        state = {f"net/{k}": v.detach().cpu().clone() for k, v in self.net.state_dict().items()}
        state.update({f"adam/{k}": v for k, v in optimizer_tensors(self._opt).items()})
        return {
            **state,
            "shift": self._shift,
            "scale": self._scale,
            "n_initial_used": self._n_initial_used,
        }

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        net = {k[4:]: torch.as_tensor(v) for k, v in state.items() if k.startswith("net/")}
        self.net.load_state_dict(net)
        adam = {k[5:]: torch.as_tensor(v) for k, v in state.items() if k.startswith("adam/")}
        load_optimizer_tensors(self._opt, adam)
        self._shift, self._scale = float(state["shift"]), float(state["scale"])
        self._n_initial_used = int(state.get("n_initial_used", 0))
