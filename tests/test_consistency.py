"""The shipped consistency models beat Tweedie's one-call x0 estimate at high noise."""

from __future__ import annotations

import pytest

from sqdf_bbo.consistency import consistency_error_report
from sqdf_bbo.registry import load_prior


@pytest.mark.parametrize("name", ["digits", "rings"])
def test_shipped_consistency_beats_tweedie_at_high_noise(name: str) -> None:
    prior = load_prior(name)
    report = consistency_error_report(prior, n=64, seed=7)
    top = report.iloc[-1]
    assert top["t_high"] == prior.scheduler.config.num_train_timesteps
    # the highest-noise bucket: the CM must be clearly better than Tweedie
    assert top["consistency_mse"] < 0.5 * top["tweedie_mse"], report.to_string()
