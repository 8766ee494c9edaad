"""The shipped consistency models beat Tweedie's one-call x0 estimate at high noise."""

from __future__ import annotations

import pytest

from sqdf_bbo.diffusion.consistency import consistency_error_report
from sqdf_bbo.diffusion.priors import load_prior


@pytest.mark.parametrize("name", ["digits", "rings"])
def test_shipped_consistency_beats_tweedie_at_high_noise(name: str) -> None:
    prior = load_prior(name)
    report = consistency_error_report(prior, n=64, seed=7)
    top = report.iloc[-1]
    assert top["t_high"] == prior.scheduler.config.num_train_timesteps
    # the highest-noise bucket: the CM must be clearly better than Tweedie
    assert top["consistency_mse"] < 0.5 * top["tweedie_mse"], report.to_string()


@pytest.mark.parametrize("name", ["digits", "rings"])
def test_shipped_consistency_beats_tweedie_at_first_sqdf_state(name: str) -> None:
    """State j = 1 is the noisiest state where SQDF evaluates its x0 estimate."""
    import torch

    prior = load_prior(name)
    K = prior.num_inference_steps
    gen = torch.Generator().manual_seed(3)
    traj = prior.with_settings(eta=0.0).sample(64, gen, return_trajectory=True).trajectory
    x, end = traj[:, 1], traj[:, K]
    with torch.no_grad():
        tw = (prior.tweedie(x, 1) - end).pow(2).mean().item()
        cm = (prior.consistency_x0(x, 1) - end).pow(2).mean().item()
    assert cm < 0.5 * tw, (cm, tw)
