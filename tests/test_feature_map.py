"""A surrogate feature map through the SQDF optimizer, and studies that used one."""

from __future__ import annotations

import pytest
import torch

from sqdf_bbo import SQDF, SQDFOptimizerConfig, StudyError, load_prior

FAST = SQDFOptimizerConfig(finetune={"steps": 2, "rollouts_per_step": 2}, progress=False)


def test_feature_map_reaches_the_surrogate_and_must_be_given_on_load(tmp_path) -> None:
    calls: list[int] = []

    def features(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return torch.cat([x, x.pow(2)], dim=1)  # (n, 2) -> (n, 4)

    opt = SQDF(load_prior("rings"), batch_size=16, seed=0, config=FAST, feature_map=features)
    batch = opt.ask()
    opt.tell(batch.ids, batch.x[:, 0].double())
    opt.ask()
    assert opt.round == 1 and calls, "the surrogate never called the feature map"
    probe = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    before = opt.surrogate.mean(probe)
    opt.save(tmp_path / "study")
    with pytest.raises(StudyError, match="feature_map="):
        SQDF.load(tmp_path / "study")
    again = SQDF.load(tmp_path / "study", feature_map=features)
    assert torch.allclose(again.surrogate.mean(probe), before)
    assert again.history.equals(opt.history)
