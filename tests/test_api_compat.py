"""Studies saved before issue 17 (settings ``alpha`` / ``alpha_official``) load, keep every
point, migrate their settings with a DeprecationWarning and continue exactly as that code did
(``tests/data/studies_before_api``, written by commit 3162153)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from sqdf_bbo.optimizers.base import Optimizer

FIXTURES = Path(__file__).parent / "data" / "studies_before_api"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())


@pytest.mark.parametrize("name", ["sqdf", "seiko"])
def test_study_saved_before_issue_17_loads_and_continues_exactly(name: str, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    expected = EXPECTED[name]
    study = shutil.copytree(FIXTURES / f"study_{name}", tmp_path / name)
    with pytest.deprecated_call(match="'alpha'"):
        opt = Optimizer.load(study, attach=False)
    assert opt.method == name
    # 1. Every point as the old code left it.
    assert opt.counts() == expected["counts"] and opt.round == expected["round"]
    assert list(opt.pending) == expected["pending"]
    assert opt.history["state"].tolist() == expected["states"]
    for got, want in zip(opt.history["value"].tolist(), expected["values"]):
        assert (math.isnan(got) and want is None) or got == want
    # 2. The KL weight became kl_weight, and means the same α to the loss.
    old = expected["config"]["finetune"]
    assert opt.trainer.alpha == expected["alpha"]
    if old["alpha"] is None:
        assert opt.config.finetune.kl_weight == old["alpha_official"]
    else:  # SEIKO's α 0.5 on D = 2: kl_weight = α · D
        assert opt.config.finetune.kl_weight == old["alpha"] * 2
    assert opt.config.finetune.steps == old["steps"]
    # 3. It continues exactly as the old code did (same machine: bit for bit).
    for x_next in expected["x_next"]:
        pending = list(opt.pending)
        x = opt.designs(pending)
        opt.tell(pending, (-(x**2).sum(1)).tolist())
        assert torch.equal(opt.ask(3).x, torch.tensor(x_next))
    assert opt.round == expected["round_next"]


def test_an_attached_old_study_is_rewritten_in_todays_names(tmp_path: Path) -> None:
    study = shutil.copytree(FIXTURES / "study_seiko", tmp_path / "seiko")
    with pytest.deprecated_call():
        Optimizer.load(study, config_changes={"finetune.steps": 3}).close()
    again = Optimizer.load(study, attach=False)  # the rewritten spec has no old names
    assert again.config.finetune.steps == 3
    assert again.config.finetune.kl_weight == EXPECTED["seiko"]["config"]["finetune"]["alpha"] * 2
