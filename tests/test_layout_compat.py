"""Studies saved before the issue-10 layout (flat optimizer configs, old module paths) still
load, keep every point, migrate their configs and continue as the old code did."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from sqdf_bbo.optimizers.base import Optimizer

FIXTURES = Path(__file__).parent / "data" / "studies_before_layout"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())


@pytest.mark.parametrize("name", ["sqdf", "seiko"])
def test_study_saved_before_the_layout_loads_and_continues(name: str, tmp_path: Path) -> None:
    expected = EXPECTED[name]
    study = shutil.copytree(FIXTURES / f"study_{name}", tmp_path / name)
    opt = Optimizer.load(study, attach=False)
    assert opt.method == name
    # 1. Every point as the old code left it.
    assert opt.counts() == expected["counts"]
    assert opt.round == expected["round"]
    assert list(opt.pending) == expected["pending"]
    history = opt.history
    assert history["state"].tolist() == expected["states"]
    for got, want in zip(history["value"].tolist(), expected["values"]):
        assert (math.isnan(got) and want is None) or got == want
    # 2. The flat config migrated into the nested one.
    old = expected["config"]
    finetune = opt.config.finetune
    assert finetune.steps == old["steps_per_round"]
    assert finetune.kl_weight == old["alpha_official"]
    assert opt.config.surrogate == old["surrogate"]
    assert dict(opt.config.surrogate_options) == old["surrogate_options"]
    if name == "sqdf":
        assert finetune.transitions_per_step == old["finetune_batch_size"]
        assert finetune.gamma == old["gamma"]
        assert finetune.buffer_capacity == old["buffer_capacity"]
    else:
        assert finetune.chains_per_step == old["finetune_batch_size"]
        assert finetune.bp_max == old["bp_max"]
    # 3. It continues as the old code did: tell every pending point, fit a round, ask 3.
    pending = list(opt.pending)
    x = opt.designs(pending)
    opt.tell(pending, (-(x**2).sum(1)).tolist())
    batch = opt.ask(3)
    assert opt.round == expected["round_next"]
    torch.testing.assert_close(batch.x, torch.tensor(expected["x_next"]), rtol=1e-4, atol=1e-4)
