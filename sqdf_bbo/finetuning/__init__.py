"""The fine-tuning layer: trainers that move a diffusion sampler towards a reward.

==================  ==========================================================
``sqdf``            :class:`SQDFTrainer`: SQDF's soft-Q policy gradient with KL to the prior
``seiko``           :class:`SEIKOTrainer`: SEIKO's back-propagation through the chain
``configs``         their settings (:class:`SQDFConfig`, :class:`SEIKOTrainConfig`), validated
``buffer``          the replay buffer of (state, step) transitions SQDF trains on
``kl``              the KL of a fine-tuned chain to its prior; the α conventions
``lora``            optional LoRA adapters (``lora`` extra)
==================  ==========================================================

Trainers take a differentiable reward ``r(x0)``; they know nothing of oracles, studies or
surrogates (the optimizers layer connects them). Both meet :class:`FineTuner`, the contract
:class:`~sqdf_bbo.optimizers.finetuned.FinetunedPriorOptimizer` relies on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch

from sqdf_bbo.diffusion.prior import DiffusionPrior

__all__ = ["FineTuner"]


class FineTuner(Protocol):
    """What an ask/tell optimizer needs of a fine-tuner.

    Built as ``Trainer(prior, config, seed=seed)`` (``prior`` is not modified; ``config`` is
    resolved for it and kept as ``.config``). ``policy`` is the sampler being fine-tuned;
    ``reference`` the pretrained prior with the sampler's settings (η, K), the baseline of the
    chain KL the optimizer reports. The trainer owns all its state, a replay buffer included:
    the optimizer hands it data through :meth:`start_round` and never writes to it.
    """

    config: Any
    policy: DiffusionPrior
    reference: DiffusionPrior

    @property
    def num_inference_steps(self) -> int: ...

    def start_round(
        self,
        round: int | None = None,
        chains: torch.Tensor | None = None,
        values: torch.Tensor | None = None,
        conditions: torch.Tensor | None = None,
    ) -> dict[str, float]:
        """Begin round ``round`` with the queried ``chains`` ``(q, K+1, *shape)``, their
        ``values`` (on the reward's scale) and, for a conditional prior, their network
        ``conditions`` ``(q, …)``; returns entries for the round log."""
        ...

    def train(
        self,
        reward_fn: Callable[[torch.Tensor], torch.Tensor],
        steps: int | None = None,
        *,
        progress: bool = False,
        constraint_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> list[dict[str, float]]:
        """``steps`` (default ``config.steps``) gradient steps; per-step logs with ``loss``,
        ``reward`` and ``kl``. For a conditional prior ``reward_fn`` is ``r(x0, c)``. ``constraint_fn`` h(x0) (optional) is the constraint term of
        the reward, which a trainer may treat apart from ``reward_fn`` (SQDF does not
        discount it)."""
        ...

    def state_dict(self) -> dict[str, torch.Tensor]: ...

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None: ...
