"""Train and check the sequence priors of Ehrlich instances (docs/sequences.md).

``python -m benchmarks.train_priors --only ehrlich-v32-l32-c4-k4-q4`` trains one (any instance
name of :func:`oracles.ehrlich.ehrlich_name` works; the shipped ones are
:data:`SHIPPED_SEQUENCE_PRIORS`); ``python -m benchmarks.sequence_priors NAME`` prints the
evidence of a shipped or saved prior.

Recipe (:data:`SEQUENCE_RECIPE`): a :class:`~sqdf_bbo.diffusion.sequence.SequenceDenoiser`
(width 64, 4 residual conv blocks, kernel 5) predicting x0 on designs ``(L, v)`` (one-hot rows in
{−1, +1}), trained with the token cross-entropy −log p_θ(x0 | x_t, t) at t ~ U{0, …, 999} on a
pool of chain sequences (x_0 ~ π, the instance's natural family) drawn from a seeded generator,
AdamW (warm-up + cosine), EMA 0.999 of the weights; cosine ᾱ schedule with leading spacing
(as the other priors), ``prediction_type="sample"``, K = 20 DDIM steps, η = 1; design map
:class:`~sqdf_bbo.diffusion.sequence.ViterbiDecoder` restricted to the transitions seen in
the training pool (every decoded sequence is feasible); no consistency model (SQDF's ``auto``
x0 estimate is then Tweedie, which for this network is its own x̂0).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from benchmarks.denoiser_training import DenoiserTrainConfig, train_denoiser
from benchmarks.metrics import vendi_score
from oracles.ehrlich import EhrlichOracle, parse_ehrlich_name, sample_chain
from sqdf_bbo.config import check_fields
from sqdf_bbo.diffusion.prior import DiffusionPrior
from sqdf_bbo.diffusion.priors import load_prior
from sqdf_bbo.diffusion.sequence import SequenceDenoiser, ViterbiDecoder, allowed_transitions
from sqdf_bbo.sequences import hamming_diversity, one_hot_designs, one_hot_features

__all__ = [
    "SHIPPED_SEQUENCE_PRIORS",
    "SequenceRecipe",
    "SEQUENCE_RECIPE",
    "ehrlich_oracle",
    "sequence_scheduler",
    "train_sequence_prior",
    "training_chain",
    "sequence_decoder",
    "sequence_prior_evidence",
    "main",
]

SHIPPED_SEQUENCE_PRIORS = ("ehrlich-v32-l32-c4-k4-q4", "ehrlich-v32-l128-c4-k4-q4")


@dataclass(frozen=True)
class SequenceRecipe:
    """Settings of a sequence prior (module docstring).

    Attributes:
        steps, batch_size, lr, ema_decay, seed: training (AdamW, warm-up + cosine, EMA).
        pool_size: chain sequences drawn once to train on.
        train_length: their length (≤ L; the network is convolutional and the chain
            stationary, so windows of 32 teach it every length; two instances with the same v
            and seed share the chain and, in one process, the trained network).
        width, depth, kernel: :class:`SequenceDenoiser` size.
        num_inference_steps, eta: the shipped sampler.
    """

    steps: int = 1500
    batch_size: int = 128
    lr: float = 2e-3
    ema_decay: float = 0.999
    seed: int = 0
    pool_size: int = 20_000
    train_length: int = 32
    width: int = 64
    depth: int = 4
    kernel: int = 5
    num_inference_steps: int = 20
    eta: float = 1.0

    def __post_init__(self) -> None:
        check_fields(self)
        if min(self.steps, self.batch_size, self.pool_size, self.num_inference_steps) < 1:
            raise ValueError("steps, batch_size, pool_size and num_inference_steps must be >= 1")


SEQUENCE_RECIPE = SequenceRecipe()


def ehrlich_oracle(name: str, **kwargs) -> EhrlichOracle:
    """The :class:`EhrlichOracle` of an instance name (``ehrlich-v32-l32-c4-k4-q4[-s<seed>]``)."""
    return EhrlichOracle(**parse_ehrlich_name(name), **kwargs)


def sequence_scheduler():
    """DDIM, 1000 train steps, cosine ᾱ, leading spacing, x0 (``sample``) prediction."""
    from diffusers import DDIMScheduler  # lazy: diffusers is slow to import

    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        clip_sample=False,
        timestep_spacing="leading",
        set_alpha_to_one=True,
        prediction_type="sample",
    )


def _token_cross_entropy(
    net: nn.Module, xt: torch.Tensor, t: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor
) -> torch.Tensor:
    """Mean over positions of −log p_θ(token | x_t, t); x0 ``(b, L, v)`` one-hot designs."""
    logits = net.logits(xt, t)
    return nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), x0.argmax(-1).reshape(-1)
    )


def train_sequence_prior(
    name: str,
    recipe: SequenceRecipe = SEQUENCE_RECIPE,
    *,
    device: str = "cpu",
    progress: bool = True,
) -> DiffusionPrior:
    """Train the sequence prior of instance ``name`` (module docstring); returns it on CPU."""
    oracle = ehrlich_oracle(name)
    v, L = oracle.num_states, oracle.length
    key = (v, oracle.random_seed, recipe)
    if key not in _TRAINED:
        # 1. The natural family: a pool of chain windows (x_0 ~ π), drawn once for both parts.
        chain = training_chain(oracle, recipe)
        net = _train_network(chain, v, recipe, device, progress, name)
        _TRAINED[key] = (net, allowed_transitions(chain, v))
    net, allowed = _TRAINED[key]
    return DiffusionPrior(
        copy.deepcopy(net),
        sequence_scheduler(),
        shape=(L, v),
        eta=recipe.eta,
        num_inference_steps=recipe.num_inference_steps,
        value_range=(-1.0, 1.0),
        decoder=ViterbiDecoder(v, allowed),
        name=name,
    )


_TRAINED: dict[tuple, tuple[nn.Module, torch.Tensor]] = {}


def training_chain(oracle: EhrlichOracle, recipe: SequenceRecipe = SEQUENCE_RECIPE) -> torch.Tensor:
    """Tokens ``(pool_size, min(train_length, L))`` of the chain windows a prior is trained on
    (x_0 ~ π, a seeded generator: the same pool every call)."""
    gen = torch.Generator().manual_seed(recipe.seed + 10_000)
    length = min(recipe.train_length, oracle.length)
    return sample_chain(
        oracle.stationary_dist, oracle.transition_matrix, length, recipe.pool_size, gen
    )


def sequence_decoder(
    oracle: EhrlichOracle, recipe: SequenceRecipe = SEQUENCE_RECIPE
) -> ViterbiDecoder:
    """The design map: Viterbi decoding restricted to the transitions seen in the training
    pool (:func:`training_chain`); nothing of the oracle but its natural sequences is used."""
    v = oracle.num_states
    return ViterbiDecoder(v, allowed_transitions(training_chain(oracle, recipe), v))


def _train_network(
    chain: torch.Tensor, v: int, recipe: SequenceRecipe, device: str, progress: bool, name: str
) -> nn.Module:
    """Step 2. of :func:`train_sequence_prior`: the x0-network (EMA weights, CPU) trained on
    the chain windows ``chain (pool_size, length)``."""
    pool = one_hot_designs(chain, v)

    def draw(b: int, g: torch.Generator) -> torch.Tensor:
        return pool[torch.randint(pool.shape[0], (b,), generator=g)]

    # 2. The x0-network, trained with the token cross-entropy.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        net = SequenceDenoiser(v, width=recipe.width, depth=recipe.depth, kernel=recipe.kernel)
    scheduler = sequence_scheduler()
    cfg = DenoiserTrainConfig(
        steps=recipe.steps,
        batch_size=recipe.batch_size,
        lr=recipe.lr,
        ema_decay=recipe.ema_decay,
        seed=recipe.seed,
    )
    t0 = time.perf_counter()
    ema, loss = train_denoiser(
        net.to(device),
        draw,
        scheduler,
        cfg,
        progress=progress,
        desc=name,
        loss_fn=_token_cross_entropy,
    )
    n_params = sum(p.numel() for p in net.parameters())
    print(
        f"[{name}] denoiser: {n_params} parameters, {recipe.steps} steps, final token "
        f"cross-entropy {loss:.4f} nats, {time.perf_counter() - t0:.1f} s"
    )
    return ema.to("cpu")


def sequence_prior_evidence(
    prior: DiffusionPrior, oracle: EhrlichOracle, n: int = 1000, seed: int = 0
) -> dict[str, float]:
    """Naturalness and diversity of ``n`` prior samples against ``n`` true chain sequences.

    Keys: ``feasible`` (share of samples whose every transition is possible),
    ``loglik_samples`` / ``loglik_chain`` (mean exact chain log-likelihood, stationary start,
    of the feasible samples / of true chain sequences, nats), ``hamming_samples`` /
    ``hamming_chain`` (mean pairwise Hamming distance), ``vendi_samples`` / ``vendi_chain``
    (Vendi score, cosine kernel on one-hot vectors), ``unique`` (share of distinct sampled
    sequences), ``value_mean_samples`` / ``value_mean_chain`` (mean Ehrlich value, feasible
    ones), ``sample_s`` (seconds to draw the samples).
    """
    t0 = time.perf_counter()
    x = prior.to_design(prior.sample(n, torch.Generator().manual_seed(seed)).x)
    sample_s = time.perf_counter() - t0
    tok = oracle.tokens(x)
    chain = oracle.sample_natural(n, torch.Generator().manual_seed(seed + 1))
    feas = oracle.feasible(tok)
    ll = oracle.log_likelihood(tok)
    val, val_chain = oracle.value_of_tokens(tok), oracle.value_of_tokens(chain)
    v = oracle.num_states
    return {
        "n": float(n),
        "feasible": float(feas.double().mean()),
        "loglik_samples": float(ll[feas].mean()) if bool(feas.any()) else float("nan"),
        "loglik_chain": float(oracle.log_likelihood(chain).mean()),
        "hamming_samples": hamming_diversity(tok),
        "hamming_chain": hamming_diversity(chain),
        "vendi_samples": vendi_score(one_hot_features(tok, v), "cosine"),
        "vendi_chain": vendi_score(one_hot_features(chain, v), "cosine"),
        "unique": float(torch.unique(tok, dim=0).shape[0] / n),
        "value_mean_samples": float(val[feas].mean()) if bool(feas.any()) else float("nan"),
        "value_mean_chain": float(val_chain.mean()),
        "sample_s": sample_s,
    }


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmarks.sequence_priors NAME [--path DIR] [--n 1000]``: print the evidence."""
    p = argparse.ArgumentParser(description="evidence of a sequence prior")
    p.add_argument("name", help="instance name, e.g. ehrlich-v32-l32-c4-k4-q4")
    p.add_argument("--path", type=Path, default=None, help="a saved prior (default: shipped)")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    prior = DiffusionPrior.load(args.path) if args.path else load_prior(args.name)
    print(json.dumps(sequence_prior_evidence(prior, ehrlich_oracle(args.name), args.n), indent=2))


if __name__ == "__main__":
    main()
