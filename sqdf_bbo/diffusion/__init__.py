"""The diffusion layer: the pretrained prior and what it is made of.

==================  ==========================================================
``networks``        small ε-prediction networks and the denoiser call contract
``io``              pickle-free save/load of networks (safetensors + JSON)
``consistency``     consistency model for sharp x0 estimates, and its distillation
``sequence``        the sequence prior's x0-network and one-hot decoder (docs/sequences.md)
``conditioning``    conditions of a conditional prior (labels, embeddings, prompts), guidance
``latent``          :class:`LatentDecoder`: latents → designs (a VAE with its scaling factor)
``prior``           :class:`DiffusionPrior`: DDIM sampler, per-step Gaussians, x0 estimates
``priors``          the shipped priors (``load_prior``, ``available_priors``)
==================  ==========================================================

Importing this package imports its network modules, so every network this package can
rebuild has registered itself with :mod:`~sqdf_bbo.diffusion.io`.
"""

from __future__ import annotations

from sqdf_bbo.diffusion import conditioning, consistency, latent, networks, sequence  # noqa: F401  (networks register with io)
