"""The fine-tuning layer: trainers that move a diffusion sampler towards a reward.

==================  ==========================================================
``sqdf``            :class:`SQDFTrainer`: SQDF's soft-Q policy gradient with KL to the prior
``seiko``           :class:`SEIKOTrainer`: SEIKO's back-propagation through the chain
``buffer``          the replay buffer of (state, step) transitions SQDF trains on
``kl``              the KL of a fine-tuned chain to its prior
``lora``            optional LoRA adapters (``lora`` extra)
==================  ==========================================================

Trainers take a differentiable reward ``r(x0)``; they know nothing of oracles, studies or
surrogates (the optimizers layer connects them).
"""
