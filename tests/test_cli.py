"""The lab workflow from the shell: init → ask → tell (with a failed row) → status → ask."""

from __future__ import annotations

import csv
import json
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

from sqdf_bbo.cli import main, plugins
from sqdf_bbo.diffusion.networks import MLPDenoiser
from sqdf_bbo.diffusion.prior import DiffusionPrior
from sqdf_bbo.optimizers.sqdf import SQDF

FAST = [
    "--set", "finetune.steps=3",
    "--set", "finetune.transitions_per_step=8",
    "--set", "finetune.rollouts_per_step=2",
    "--set", "progress=false",
    "--set", 'surrogate_options={"steps": 20, "n_heads": 2}',
]  # fmt: skip


@pytest.fixture
def prior_dir(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    prior = DiffusionPrior(
        MLPDenoiser(2, hidden=16, depth=2),
        DDIMScheduler(clip_sample=False),
        shape=(2,),
        num_inference_steps=4,
        value_range=None,
        name="tiny",
    )
    return prior.save(tmp_path / "prior")


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_lab_workflow(tmp_path: Path, prior_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = tmp_path / "study"
    s = str(study)
    assert (
        main(
            [
                "init",
                "--study",
                s,
                "--prior",
                str(prior_dir),
                "--batch-size",
                "5",
                "--seed",
                "3",
                *FAST,
            ]
        )
        == 0
    )
    assert "created study" in capsys.readouterr().out

    # ask: CSV (ids + flattened designs) and the .npy beside it
    out = tmp_path / "round0" / "batch.csv"
    assert main(["ask", "--study", s, "--out", str(out)]) == 0
    rows = read_rows(out)
    assert [r["id"] for r in rows] == ["0", "1", "2", "3", "4"]
    assert list(rows[0]) == ["id", "x0", "x1", "study"]  # study: the study's uid (checked by tell)
    x = np.load(out.with_suffix(".npy"), allow_pickle=False)
    assert x.shape == (5, 2)
    assert np.array_equal(
        np.array([[float(r["x0"]), float(r["x1"])] for r in rows], dtype=np.float32), x
    )

    # tell: a failed row (empty), a nan row, in shuffled order, one left pending
    res = tmp_path / "results.csv"
    res.write_text("id,value\n3,0.25\n0,\n1,nan\n2,1.5\n")
    assert main(["tell", "--study", s, str(res)]) == 0
    assert "2 failed" in capsys.readouterr().out

    assert main(["status", "--study", s, "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert (st["pending"], st["complete"], st["failed"]) == (1, 2, 2)
    assert st["best_value"] == 1.5 and st["best_id"] == 2 and st["round"] == 0
    assert main(["status", "--study", s]) == 0
    assert "best     1.5 (id 2)" in capsys.readouterr().out

    # a second ask starts round 1 (a fine-tune) and gets new ids
    assert main(["ask", "--study", s, "--n", "3", "--out", str(tmp_path / "b1.csv")]) == 0
    assert [r["id"] for r in read_rows(tmp_path / "b1.csv")] == ["5", "6", "7"]

    # external data and export of pending points
    ext = tmp_path / "ext.csv"
    ext.write_text("x0,x1,value\n0.1,0.2,3.0\n-0.5,0.5,\n")
    assert main(["add", "--study", s, str(ext)]) == 0
    assert (
        main(["export", "--study", s, "--state", "pending", "--out", str(tmp_path / "p.csv")]) == 0
    )
    assert [r["id"] for r in read_rows(tmp_path / "p.csv")] == ["4", "5", "6", "7"]

    opt = SQDF.load(study, attach=False)
    h = opt.history.set_index("id")
    assert opt.round == 1
    assert h.loc[0, "state"] == "failed" and h.loc[1, "state"] == "failed"
    assert h.loc[3, "value"] == 0.25 and h.loc[4, "state"] == "pending"
    assert list(h.loc[[8, 9], "source"]) == ["external", "external"]
    assert h.loc[9, "state"] == "failed"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("id,value\n0,abc\n", "line 2: value 'abc' is not a number"),
        ("id,value\n99,1.0\n", "unknown id 99"),
        ("id,value\n0,1.0\n0,2.0\n", "twice"),
        ("id,score\n0,1.0\n", "no 'value' column"),
        ("id,value\n1.5,1.0\n", "not an integer"),
    ],
)
def test_bad_tell_file_is_one_line_error_and_changes_nothing(
    tmp_path: Path, prior_dir: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    s = str(tmp_path / "study")
    assert main(["init", "--study", s, "--prior", str(prior_dir), "--batch-size", "2", *FAST]) == 0
    assert main(["ask", "--study", s, "--out", str(tmp_path / "b.csv")]) == 0
    capsys.readouterr()
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    assert main(["tell", "--study", s, str(bad)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert SQDF.load(s, attach=False).counts()["pending"] == 2


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--study", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["init", "--study", str(tmp_path / "s"), "--prior", "no-such-prior"]) == 2
    assert "unknown prior 'no-such-prior'" in capsys.readouterr().err
    assert main(["frobnicate"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()


@pytest.mark.skipif(
    "bench" not in {ep.name for ep in entry_points(group=plugins.GROUP)},
    reason="the benchmarks commands' entry points are not installed (pip install -e .)",
)
def test_bench_and_demo_come_from_the_benchmarks_entry_points(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The installed entry points give bench and demo; bench runs benchmarks.runner.bench_cli."""
    import benchmarks.cli
    import benchmarks.runner

    found = plugins.discover()
    assert found["bench"] is benchmarks.cli.bench_command
    assert found["demo"] is benchmarks.cli.demo_command
    calls = []
    fake = lambda args: calls.append((args.suite, args.out, args.seeds)) or 0  # noqa: E731
    monkeypatch.setattr(benchmarks.runner, "bench_cli", fake)
    assert main(["bench", "--suite", "quick", "--out", str(tmp_path), "--seeds", "0,1"]) == 0
    assert calls == [("quick", str(tmp_path), "0,1")]
    assert main(["bench", "--suite", "airfoil"]) == 2  # the choices of sqdf-bbo bench
    assert "invalid choice" in capsys.readouterr().err


class FakeEntryPoint:
    def __init__(self, name: str, value: str, load) -> None:
        self.name, self.value, self._load = name, value, load

    def load(self):
        return self._load()


def test_bench_and_demo_fail_clearly_without_the_benchmarks_package(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No entry points (the library alone), or a module that is gone: one line, exit 2; the
    study commands still work."""
    monkeypatch.setattr(plugins, "_entry_points", lambda: [])
    assert main(["bench", "--suite", "quick", "--out", str(tmp_path), "--seeds", "0,1"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "'bench' needs the benchmarks package" in err
    assert "not available in this installation" in err
    assert main(["demo"]) == 2
    assert "'demo' needs the benchmarks package" in capsys.readouterr().err
    assert main(["status", "--study", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["frobnicate", "--x"]) == 2  # other unknown options are still errors
    assert len(capsys.readouterr().err.strip().splitlines()) == 1

    def gone():
        raise ModuleNotFoundError("No module named 'benchmarks'", name="benchmarks")

    def broken():
        raise AttributeError("module 'benchmarks.cli' has no attribute 'demo_command'")

    monkeypatch.setattr(
        plugins,
        "_entry_points",
        lambda: [
            FakeEntryPoint("bench", "benchmarks.cli:bench_command", gone),
            FakeEntryPoint("demo", "benchmarks.cli:demo_command", broken),
            FakeEntryPoint("plain", "somewhere:thing", lambda: object()),
        ],
    )
    assert main(["bench", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "needs benchmarks.cli (benchmarks/cli.py), which is not available" in err
    assert main(["demo"]) == 2
    assert "benchmarks.cli:demo_command" in capsys.readouterr().err
    assert main(["plain"]) == 2
    assert "sqdf_bbo.cli.plugins.Command" in capsys.readouterr().err


def test_a_plugin_command_adds_its_options_and_runs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = []
    hello = plugins.Command(
        "say hello",
        lambda p: p.add_argument("--name", default="world"),
        lambda args: seen.append(args.name),
    )
    eps = [FakeEntryPoint("hello", "x:hello", lambda: hello)]
    eps.append(FakeEntryPoint("init", "x:init", lambda: hello))  # cannot replace a study command
    monkeypatch.setattr(plugins, "_entry_points", lambda: eps)
    assert main(["hello", "--name", "lab"]) == 0 and seen == ["lab"]
    assert main(["hello", "--nope"]) == 2
    assert "unrecognized arguments: --nope" in capsys.readouterr().err
    assert main(["init", "--study", "x"]) == 2  # still the study command: --prior is required
    assert "--prior" in capsys.readouterr().err


def test_other_methods_from_the_shell(
    tmp_path: Path, prior_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = str(tmp_path / "p")
    assert (
        main(
            [
                "init",
                "--study",
                s,
                "--prior",
                str(prior_dir),
                "--method",
                "prior",
                "--batch-size",
                "3",
            ]
        )
        == 0
    )
    assert main(["ask", "--study", s, "--out", str(tmp_path / "b.csv")]) == 0
    capsys.readouterr()
    assert main(["status", "--study", s, "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["method"] == "prior" and st["pending"] == 3
    g = str(tmp_path / "g")
    assert main(["init", "--study", g, "--prior", str(prior_dir), "--method", "gp-bo"]) == 2
    assert "pass --box" in capsys.readouterr().err  # the tiny prior is unbounded
    assert (
        main(["init", "--study", g, "--prior", str(prior_dir), "--method", "gp-bo", "--box=-3,3"])
        == 0
    )
    capsys.readouterr()
    assert (
        main(
            ["init", "--study", str(tmp_path / "x"), "--prior", str(prior_dir), "--method", "nope"]
        )
        == 2
    )
    assert capsys.readouterr().err.startswith("sqdf-bbo: unknown method 'nope'; available:")


def test_old_setting_names_on_the_command_line_warn_and_still_work(
    tmp_path: Path, prior_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = tmp_path / "old-names"
    old = ["--set", "steps_per_round=3", "--set", "alpha_official=4", "--set", "progress=false"]
    argv = ["init", "--study", str(study), "--prior", str(prior_dir), *old]
    with pytest.deprecated_call(match=r"'steps_per_round' .* 0\.4; use 'finetune\.steps'"):
        assert main(argv) == 0
    opt = SQDF.load(study, attach=False)
    assert opt.config.finetune.steps == 3 and opt.config.finetune.kl_weight == 4.0
    # the old α (our convention) is not a plain rename: refused with what replaced it
    assert main(["config", "--study", str(study), "--set", "alpha=0.5"]) == 2
    assert "'alpha' was replaced by kl_weight" in capsys.readouterr().err
