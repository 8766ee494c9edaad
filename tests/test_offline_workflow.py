"""The offline / warm-start workflow (docs/offline.md): an archive with failed points told
through ``tell_external`` (API) or ``sqdf-bbo add`` (CLI); the next ask is fine-tuned on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sqdf_bbo.cli import main
from sqdf_bbo.optimizers.sqdf import SQDF, SQDFOptimizerConfig
from tests.test_cli import FAST as CLI_FAST
from tests.test_sqdf_optimizer import FAST, tiny_prior

NAN = float("nan")


def archive(n: int = 6) -> tuple[torch.Tensor, list[float]]:
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(3))
    y = [float(v) for v in x[:, 0]]
    y[1], y[4] = NAN, float("inf")  # two failed rows
    return x, y


def test_archive_with_failures_is_recorded_as_external(tmp_path: Path) -> None:
    x, y = archive()
    opt = SQDF(tiny_prior(), batch_size=4, seed=0, config=FAST, study=tmp_path / "s")
    ids = opt.tell_external(x, y, reasons={1: "solver diverged"}, transient={4})
    h = opt.history.set_index("id")
    assert (h.loc[ids, "source"] == "external").all()
    assert list(h.loc[ids, "state"]) == ["complete", "failed"] + ["complete"] * 2 + [
        "failed",
        "complete",
    ]
    assert h.loc[ids[1], "reason"] == "solver diverged" and not h.loc[ids[1], "transient"]
    assert h.loc[ids[4], "transient"] and h.loc[ids[4], "reason"] is None
    assert torch.equal(opt.designs(ids), x)
    # nothing lost: the reloaded study has every row, reason and flag
    opt.close()
    back = SQDF.load(tmp_path / "s", attach=False)
    hb = back.history.set_index("id")
    for col in ("state", "source", "reason", "transient"):
        assert list(hb.loc[ids, col]) == list(h.loc[ids, col])
    assert np.array_equal(hb.loc[ids, "value"].to_numpy(), h.loc[ids, "value"].to_numpy(), True)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"reasons": ["bad", None, None, None, None, None]}, ValueError, "row 0 has a reason"),
        ({"transient": [True] + [False] * 5}, ValueError, "row 0 has a transient flag"),
        ({"reasons": ["a"] * 3}, ValueError, "expected 6 reasons"),
        ({"reasons": "solver"}, TypeError, "reasons must be a sequence"),
        ({"transient": {9}}, ValueError, "not told in this call"),
    ],
)
def test_bad_archive_changes_nothing(kwargs: dict, error: type, message: str) -> None:
    x, y = archive()
    opt = SQDF(tiny_prior(), batch_size=4, seed=0, config=FAST)
    with pytest.raises(error, match=message):
        opt.tell_external(x, y, **kwargs)
    assert len(opt) == 0
    with pytest.raises(ValueError, match="design shape|shape"):
        opt.tell_external(torch.zeros(3, 5), [1.0] * 3)
    assert len(opt) == 0


def test_first_ask_is_finetuned_against_the_archive() -> None:
    """Rings prior, archive = prior samples scored by r(x) = aᵀx: the first batch after the
    archive is one fine-tuned round (round 1, fit on the archive's successful points) and
    its mean reward is far above a batch of the prior (seed 0 measured: −0.09 → 0.88)."""
    from oracles.toy import LinearOracle
    from sqdf_bbo.diffusion.priors import load_prior

    prior = load_prior("rings")
    a = torch.tensor([1.0, 0.5]) / torch.tensor([1.0, 0.5]).norm()
    reward = LinearOracle(direction=a)
    x = prior.sample(256, torch.Generator().manual_seed(11)).x
    y = [float(v) for v in reward(x)]
    y[:8] = [NAN] * 8  # failed points are kept but not fitted
    cfg = SQDFOptimizerConfig(finetune={"gamma": 1.0, "kl_weight": 0.5}, progress=False)
    opt = SQDF(prior, batch_size=128, seed=0, config=cfg)
    ids = opt.tell_external(x, y)
    batch = opt.ask()
    assert opt.round == 1 and opt.round_log[0]["n_train"] == 248
    assert opt.surrogate.n_train == 248
    assert not set(batch.ids) & set(ids)
    cold = SQDF(prior, batch_size=128, seed=0, config=cfg).ask()  # round 0: the prior
    gain = float(reward(batch.x).mean() - reward(cold.x).mean())
    print(f"prior batch {float(reward(cold.x).mean()):.3f}, warm batch gain {gain:.3f}")
    assert gain > 0.6


def test_cli_add_archive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prior_dir = tiny_prior().save(tmp_path / "prior")
    s = str(tmp_path / "study")
    assert (
        main(["init", "--study", s, "--prior", str(prior_dir), "--batch-size", "3", *CLI_FAST]) == 0
    )
    data = tmp_path / "archive.csv"
    data.write_text(
        "id,x0,x1,value,reason,transient\n"
        "0,0.1,0.2,1.5,,\n"
        "1,0.3,-0.2,,mesh failed,\n"
        "2,-0.4,0.0,nan,,true\n"
        "3,0.5,0.5,2.5,,false\n"
    )
    assert main(["add", "--study", s, str(data)]) == 0
    assert "2 failed, 1 of them transient" in capsys.readouterr().out
    assert main(["ask", "--study", s, "--out", str(tmp_path / "b.csv")]) == 0
    opt = SQDF.load(tmp_path / "study", attach=False)
    h = opt.history.set_index("id")
    assert opt.round == 1, "the first ask fit the archive"
    assert list(h.loc[[0, 1, 2, 3], "source"]) == ["external"] * 4
    assert list(h.loc[[0, 1, 2, 3], "state"]) == ["complete", "failed", "failed", "complete"]
    assert h.loc[1, "reason"] == "mesh failed" and not h.loc[1, "transient"]
    assert h.loc[2, "transient"] and h.loc[3, "value"] == 2.5
    assert list(h.loc[[4, 5, 6], "source"]) == ["asked"] * 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("x0,x1,value,reason\n0.1,0.2,1.0,typo\n", "line 2: a reason or transient flag"),
        ("x0,x1,value,transient\n0.1,0.2,,maybe\n", "'maybe' is not true/false"),
        ("x0,x1,value\n0.1,abc,1.0\n", "design value x1='abc' is not a number"),
        ("x0,x2,value\n0.1,0.2,1.0\n", "must be exactly x0..x1"),
        ("x0,x1,score\n0.1,0.2,1.0\n", "needs columns x0..x{D-1} and value"),
        ("x0,x1,value\n0.1,0.2,1e400\n", "too large"),
        ("x0,x1,value\n", "has no rows"),
        ("x0,x1,value\n0.1,0.2,1.0,7\n", "field"),
    ],
)
def test_cli_bad_archive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    prior_dir = tiny_prior().save(tmp_path / "prior")
    s = str(tmp_path / "study")
    assert main(["init", "--study", s, "--prior", str(prior_dir), "--set", "progress=false"]) == 0
    capsys.readouterr()
    data = tmp_path / "bad.csv"
    data.write_text(content)
    assert main(["add", "--study", s, str(data)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert len(SQDF.load(s, attach=False)) == 0, "nothing was added"


def test_cli_warm_start_from_another_studys_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prior_dir = tiny_prior().save(tmp_path / "prior")
    old, new = str(tmp_path / "old"), str(tmp_path / "new")
    quiet = ["--set", "progress=false"]
    for s in (old, new):
        args = ["init", "--study", s, "--prior", str(prior_dir), "--batch-size", "5", *quiet]
        assert main(args) == 0
    assert main(["ask", "--study", old, "--out", str(tmp_path / "b.csv")]) == 0
    (tmp_path / "r.csv").write_text(
        "id,value,reason,transient\n0,1.5,,\n1,,clogged,true\n2,inf,diverged,\n3,2.5,,\n"
    )  # id 4 stays pending
    assert main(["tell", "--study", old, str(tmp_path / "r.csv")]) == 0
    assert main(["fail", "--study", old, "--ids", "3", "--reason", "bad assay"]) == 0
    export = tmp_path / "old.csv"
    assert main(["export", "--study", old, "--out", str(export)]) == 0
    capsys.readouterr()
    assert main(["add", "--study", new, str(export)]) == 2  # the guard without the flag
    assert "from another study" in capsys.readouterr().err
    assert main(["add", "--study", new, str(export), "--from-export"]) == 0
    assert "1 pending rows skipped" in capsys.readouterr().out
    h = SQDF.load(new, attach=False).history.set_index("id")
    assert list(h["source"]) == ["external"] * 4
    assert list(h["state"]) == ["complete", "failed", "failed", "failed"]
    assert h.loc[0, "value"] == 1.5
    assert list(h["reason"]) == [None, "clogged", "diverged", "bad assay"]
    assert list(h["transient"]) == [False, True, False, True]
    (tmp_path / "p.csv").write_text("x0,x1,value,state\n0,0,,pending\n")
    assert main(["add", "--study", new, str(tmp_path / "p.csv"), "--from-export"]) == 2
    assert "no rows that were told" in capsys.readouterr().err
    (tmp_path / "q.csv").write_text("x0,x1,value,state\n0,0,1,done\n")
    assert main(["add", "--study", new, str(tmp_path / "q.csv"), "--from-export"]) == 2
    assert "state 'done'" in capsys.readouterr().err
