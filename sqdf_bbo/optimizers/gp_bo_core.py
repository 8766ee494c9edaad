"""Moved into :mod:`sqdf_bbo.optimizers.gp_bo` (kept until ``sqdf_bbo.optimizers`` imports
``GPBOConfig`` from there)."""

from sqdf_bbo.optimizers.gp_bo import GPBOConfig, propose_qlogei, select_training_set

__all__ = ["GPBOConfig", "select_training_set", "propose_qlogei"]
