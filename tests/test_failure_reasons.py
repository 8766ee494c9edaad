"""Failure reasons and transient failures: a failed point says whether its failure is about
the design (``transient=False``) or not (a worker died, a sample was lost: ``True``), through
``tell``, ``mark_failed``, ``run``, the oracles, the study on disk and the CLI."""

from __future__ import annotations

import csv
import json
import math
import shutil
import sqlite3
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from oracles import CallableOracle
from sqdf_bbo.cli import main
from sqdf_bbo.optimizers.base import Optimizer
from sqdf_bbo.study.store import DB_NAME, StudyError
from tests.test_cli_hardening import assert_one_line_error, make_study, prior_dir, run
from tests.test_optimizer_contract import GaussianSearch

__all__ = ["prior_dir"]  # the fixture, re-used

DATA = Path(__file__).parent / "data"


def snapshot_of(opt: Optimizer) -> list[tuple]:
    """Everything per point that a rejected call must leave unchanged."""
    return [
        (p.id, p.state, repr(p.value), p.reason, p.transient, p.told_at)
        for p in sorted(opt._points.values(), key=lambda p: p.id)
    ]


# ---------------------------------------------------------------------------- tell
def test_a_told_nan_is_a_design_failure_by_default() -> None:
    opt = GaussianSearch(batch_size=3)
    b = opt.ask()
    opt.tell(b.ids, [1.0, math.nan, None])
    h = opt.history.set_index("id")
    assert h["state"].tolist() == ["complete", "failed", "failed"]
    assert h["transient"].tolist() == [False, False, False]
    assert h["transient"].dtype == bool
    assert h["reason"].isna().all()


@pytest.mark.parametrize(
    "transient",
    [True, [True, True], "set", "array", "tensor-bool"],
    ids=["bool", "flags", "id-set", "id-array", "bool-tensor"],
)
def test_transient_flags_in_every_accepted_form(transient: Any) -> None:
    opt = GaussianSearch(batch_size=2)
    b = opt.ask()
    if transient == "set":
        transient = set(b.ids)
    elif transient == "array":
        transient = np.array(b.ids)
    elif transient == "tensor-bool":
        transient = torch.tensor([True, True])
    opt.tell(b.ids, [math.nan, math.inf], transient=transient)
    assert opt.history["transient"].tolist() == [True, True]


def test_reasons_as_sequence_and_mapping_and_transient_as_some_ids() -> None:
    opt = GaussianSearch(batch_size=4)
    b = opt.ask()
    opt.tell(
        b.ids[:2],
        [math.nan, 2.0],
        reasons=["solver diverged", None],
    )
    opt.tell(
        b.ids[2:],
        [math.nan, math.nan],
        reasons={b.ids[3]: "worker died"},
        transient=[b.ids[3]],
    )
    h = opt.history.set_index("id")
    assert h.loc[b.ids[0], "reason"] == "solver diverged" and not h.loc[b.ids[0], "transient"]
    assert h.loc[b.ids[1], "reason"] is None and h.loc[b.ids[1], "state"] == "complete"
    assert h.loc[b.ids[2], "reason"] is None and not h.loc[b.ids[2], "transient"]
    assert h.loc[b.ids[3], "reason"] == "worker died" and h.loc[b.ids[3], "transient"]


@pytest.mark.parametrize(
    "kwargs, error, fragment",
    [
        ({"reasons": ["oops", None]}, ValueError, "has a reason but a finite value"),
        ({"reasons": {0: "oops"}}, ValueError, "has a reason but a finite value"),
        ({"transient": True}, ValueError, "transient flag but a finite value"),
        ({"transient": [True, False]}, ValueError, "transient flag but a finite value"),
        ({"transient": {0}}, ValueError, "transient flag but a finite value"),
        ({"reasons": [None]}, ValueError, "expected 2 reasons"),
        ({"reasons": {99: "x"}}, ValueError, "not told in this call"),
        ({"reasons": [3, None]}, TypeError, "a reason must be a str"),
        ({"reasons": "why"}, TypeError, "reasons must be"),
        ({"transient": [True]}, ValueError, "expected 2 transient flags"),
        ({"transient": {99}}, ValueError, "not told in this call"),
        ({"transient": "yes"}, TypeError, "transient must be"),
        ({"transient": [1.5]}, TypeError, "ids must be ints"),
    ],
)
def test_bad_reasons_or_flags_change_nothing(
    kwargs: dict[str, Any], error: type, fragment: str, tmp_path: Path
) -> None:
    opt = GaussianSearch(batch_size=2, study=tmp_path / "s")
    b = opt.ask()
    assert b.ids == [0, 1]
    before = snapshot_of(opt)
    with pytest.raises(error, match=fragment):
        opt.tell(b.ids, [0.5, math.nan], **kwargs)
    assert snapshot_of(opt) == before
    opt.close()
    assert snapshot_of(GaussianSearch.load(tmp_path / "s", attach=False)) == before


# ---------------------------------------------------------------------------- mark_failed
def test_mark_failed_is_transient_unless_told_it_is_a_design_failure() -> None:
    opt = GaussianSearch(batch_size=3)
    b = opt.ask()
    opt.tell(b.ids, [1.0, 2.0, 3.0])
    opt.mark_failed([b.ids[0]], "plate contaminated")
    opt.mark_failed([b.ids[1]], "infeasible after all", transient=False)
    h = opt.history.set_index("id")
    assert h["transient"].tolist() == [True, False, False]
    assert h["state"].tolist() == ["failed", "failed", "complete"]
    with pytest.raises(TypeError, match="transient must be a bool"):
        opt.mark_failed([b.ids[2]], transient=1)  # type: ignore[arg-type]
    assert h.loc[b.ids[2], "state"] == "complete"


def test_observations_tell_complete_design_and_transient_failures_apart() -> None:
    opt = GaussianSearch(batch_size=4)
    b = opt.ask()
    opt.tell(b.ids, [1.0, math.nan, math.nan, 4.0], transient={b.ids[2]})
    opt.mark_failed([b.ids[3]], "sample lost")
    obs = opt.observations(include_failed=True)
    assert obs.ids == b.ids
    assert obs.states == ["complete", "failed", "failed", "failed"]
    assert obs.transient == [False, False, True, True]
    ok = opt.observations()
    assert ok.ids == [b.ids[0]] and ok.states == ["complete"] and ok.transient == [False]


# ---------------------------------------------------------------------------- the study
def test_flags_and_reasons_survive_the_study_and_are_checksummed(tmp_path: Path) -> None:
    opt = GaussianSearch(batch_size=3, study=tmp_path / "s")
    b = opt.ask()
    opt.tell(b.ids, [math.nan, math.nan, 1.0], reasons=["too big", "node lost", None],
             transient=[False, True, False])  # fmt: skip
    opt.mark_failed([b.ids[2]], "mislabelled")
    want = opt.history
    opt.close()
    back = GaussianSearch.load(tmp_path / "s", attach=False).history
    assert back["transient"].tolist() == want["transient"].tolist() == [False, True, True]
    assert back["reason"].tolist() == ["too big", "node lost", "mislabelled"]
    # the flag is covered by the row checksum, both ways
    for pid, flag in ((0, 1), (1, 0)):
        copy = shutil.copytree(tmp_path / "s", tmp_path / f"edit{pid}")
        with sqlite3.connect(copy / DB_NAME) as conn:
            conn.execute("UPDATE points SET transient = ? WHERE id = ?", (flag, pid))
        with pytest.raises(StudyError, match=f"point {pid} fails its checksum"):
            GaussianSearch.load(copy, attach=False)


@pytest.mark.parametrize("fixture", ["study_v0_1", "studies_before_layout/study_sqdf"])
def test_old_studies_read_failed_points_as_design_failures(fixture: str, tmp_path: Path) -> None:
    study = shutil.copytree(DATA / fixture, tmp_path / "old")
    detached = Optimizer.load(study, attach=False)
    h = detached.history
    assert (h["state"] == "failed").any()
    assert not h["transient"].any()
    assert all(s == "complete" or not t for s, t in zip(h["state"], h["transient"]))
    opt = Optimizer.load(study)  # attaching migrates: adds the column, keeps every row's CRC
    pending = list(opt.pending)
    opt.tell(pending[:1], [math.nan], transient=True)
    opt.close()
    again = Optimizer.load(study, attach=False).history.set_index("id")
    assert bool(again.loc[pending[0], "transient"]) is True
    assert int(again["transient"].sum()) == 1


# ---------------------------------------------------------------------------- oracles and run
class FlakyExecutor(Executor):
    """Runs jobs at once; the jobs numbered in ``fail`` raise as a dead worker would."""

    def __init__(self, fail: set[int]) -> None:
        self.fail = fail
        self.n = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future:
        fut: Future = Future()
        k, self.n = self.n, self.n + 1
        if k in self.fail:
            fut.set_exception(RuntimeError("worker died"))
        else:
            fut.set_result(fn(*args, **kwargs))
        return fut


def design_fails_above(x: torch.Tensor) -> float:
    if float(x[0]) > 0.0:
        raise RuntimeError("design out of spec")
    return -float((x**2).sum())


def test_oracle_marks_executor_failures_transient() -> None:
    oracle = CallableOracle(design_fails_above, (2,), executor=FlakyExecutor({1}))
    x = torch.tensor([[0.0, 0.0], [0.1, 0.1], [0.9, 0.0], [-0.2, 0.0]])
    y = oracle(x)
    assert torch.isnan(y[[1, 2]]).all() and torch.isfinite(y[[0, 3]]).all()
    assert oracle.failures[1] == "executor: RuntimeError: worker died"
    assert "design out of spec" in oracle.failures[2]
    assert oracle.transient_failures == {1}
    assert [(i, t) for _, i, _, t in oracle.failure_log] == [(1, True), (2, False)]
    oracle.executor = None
    oracle(x[:1])
    assert oracle.failures == {} and oracle.transient_failures == set()


def test_run_tells_the_oracles_reasons_and_transient_flags() -> None:
    opt = GaussianSearch(batch_size=4, seed=1)
    oracle = CallableOracle(design_fails_above, (2,), executor=FlakyExecutor({0, 5}))
    opt.run(oracle, budget=8, progress=False)
    h = opt.history.set_index("id")
    assert bool(h.loc[0, "transient"]) and h.loc[0, "reason"].startswith("executor:")
    assert bool(h.loc[5, "transient"])
    design = h[(h["state"] == "failed") & ~h["transient"]]
    expected = [i for i in range(8) if i not in (0, 5) and float(opt.designs([i])[0, 0]) > 0]
    assert design.index.tolist() == expected and expected, "some seeded designs have x0 > 0"
    assert all("design out of spec" in r for r in design["reason"])
    assert h.loc[h["state"] == "complete", "reason"].isna().all()


def test_run_with_a_plain_callable_records_design_failures() -> None:
    opt = GaussianSearch(batch_size=3)
    opt.run(lambda x: torch.tensor([1.0, math.nan, 2.0]), budget=3, progress=False)
    h = opt.history
    assert h["state"].tolist() == ["complete", "failed", "complete"]
    assert not h["transient"].any()
    assert h["reason"].tolist() == [None, "the oracle returned nan", None]


# ---------------------------------------------------------------------------- the CLI
def write_results(path: Path, header: list[str], rows: list[list[str]]) -> str:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return str(path)


def test_cli_tell_reads_reason_and_transient_columns(
    capsys: pytest.CaptureFixture[str], prior_dir: Path, tmp_path: Path
) -> None:
    study, _ = make_study(capsys, prior_dir, tmp_path / "s", n=3)
    bad = write_results(
        tmp_path / "bad.csv",
        ["id", "value", "reason", "transient"],
        [["0", "1.5", "looked odd", ""], ["1", "nan", "", "true"], ["2", "", "", ""]],
    )
    rc, _, err = run(capsys, "tell", "--study", study, bad)
    assert_one_line_error(rc, err, "id 0 has a reason but a finite value")
    assert Optimizer.load(study, attach=False).counts()["pending"] == 3
    bad = write_results(tmp_path / "bad2.csv", ["id", "value", "transient"], [["0", "", "maybe"]])
    rc, _, err = run(capsys, "tell", "--study", study, bad)
    assert_one_line_error(rc, err, "'maybe' is not true/false")
    good = write_results(
        tmp_path / "good.csv",
        ["id", "value", "reason", "transient"],
        [["0", "1.5", "", "false"], ["1", "nan", "node lost", "true"], ["2", "", "crashed", ""]],
    )
    rc, out, err = run(capsys, "tell", "--study", study, good)
    assert rc == 0, err
    assert "2 failed, 1 of them transient" in out
    h = Optimizer.load(study, attach=False).history
    assert h["transient"].tolist() == [False, True, False]
    assert h["reason"].tolist() == [None, "node lost", "crashed"]
    rc, out, _ = run(capsys, "status", "--study", study)
    assert "failed 2 (design 1, transient 1;" in out
    rc, out, _ = run(capsys, "status", "--study", study, "--json")
    st = json.loads(out)
    assert (st["failed_design"], st["failed_transient"]) == (1, 1)


def test_cli_fail_is_transient_unless_design_failure_is_given(
    capsys: pytest.CaptureFixture[str], prior_dir: Path, tmp_path: Path
) -> None:
    study, _ = make_study(capsys, prior_dir, tmp_path / "s", n=3)
    rc, out, err = run(capsys, "fail", "--study", study, "--ids", "0", "--reason", "tube lost")
    assert rc == 0 and "as transient failures" in out, err
    rc, out, err = run(capsys, "fail", "--study", study, "--ids", "1", "--design-failure")
    assert rc == 0 and "as design failures" in out, err
    h = Optimizer.load(study, attach=False).history
    assert h["transient"].tolist() == [True, False, False]
    rc, _, err = run(capsys, "export", "--study", study, "--out", str(tmp_path / "h.csv"))
    assert rc == 0, err
    with open(tmp_path / "h.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["transient"] for r in rows] == ["true", "false", "false"]
    assert [r["reason"] for r in rows] == ["tube lost", "", ""]
    assert main(["fail", "--study", study, "--ids", "2", "--design-failure"]) == 0
