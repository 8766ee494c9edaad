"""``sqdf-bbo`` defects found by probing the CLI (issue 8: D1, D3–D8, D10, D13)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from diffusers import DDIMScheduler

from sqdf_bbo.cli import main
from sqdf_bbo.diffusion.networks import MLPDenoiser
from sqdf_bbo.diffusion.prior import DiffusionPrior
from sqdf_bbo.optimizers import PriorSampler
from sqdf_bbo.optimizers.base import Optimizer
from sqdf_bbo.optimizers.sqdf import SQDF

Capture = pytest.CaptureFixture[str]


@pytest.fixture
def prior_dir(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    prior = DiffusionPrior(
        MLPDenoiser(2, hidden=8, depth=1),
        DDIMScheduler(clip_sample=False),
        shape=(2,),
        num_inference_steps=3,
        value_range=None,
        name="tiny",
    )
    return prior.save(tmp_path / "prior")


def run(capsys: Capture, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc: int, err: str, fragment: str) -> None:
    assert rc == 2, err
    assert fragment in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def make_study(
    capsys: Capture, prior: Path, folder: Path, n: int = 3, seed: int = 0
) -> tuple[str, Path]:
    """A `prior`-method study (no fine-tuning) with one asked batch of n; returns (study, csv)."""
    s = str(folder)
    rc, _, err = run(
        capsys, "init", "--study", s, "--prior", str(prior), "--method", "prior",
        "--batch-size", str(n), "--seed", str(seed),
    )  # fmt: skip
    assert rc == 0, err
    out = folder.parent / f"{folder.name}-batch.csv"
    assert run(capsys, "ask", "--study", s, "--out", str(out))[0] == 0
    return s, out


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def write_rows(path: Path, header: list[str], rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, header)
        w.writeheader()
        w.writerows(rows)
    return path


def with_values(batch: Path, out: Path, value: str = "1.0") -> Path:
    """The asked batch file with a value column added (what a lab sends back)."""
    header, rows = read_rows(batch)
    return write_rows(out, [*header, "value"], [{**r, "value": value} for r in rows])


def counts(study: str) -> dict[str, int]:
    opt = Optimizer.load(study, attach=False)
    return opt.counts()


def study_uid(study: str) -> str:
    return Optimizer.load(study, attach=False)._study_uid


# ---------------------------------------------------------------------------- D3
def test_ask_and_export_write_the_study_column(
    tmp_path: Path, prior_dir: Path, capsys: Capture
) -> None:
    s, batch = make_study(capsys, prior_dir, tmp_path / "a")
    header, rows = read_rows(batch)
    assert header == ["id", "x0", "x1", "study"]
    assert {r["study"] for r in rows} == {study_uid(s)}
    exp = tmp_path / "exp.csv"
    assert run(capsys, "export", "--study", s, "--out", str(exp))[0] == 0
    assert {r["study"] for r in read_rows(exp)[1]} == {study_uid(s)}


def test_tell_accepts_its_own_batch_file_and_a_plain_id_value_file(
    tmp_path: Path, prior_dir: Path, capsys: Capture
) -> None:
    s, batch = make_study(capsys, prior_dir, tmp_path / "a")
    res = with_values(batch, tmp_path / "res.csv")
    rows = read_rows(res)[1]
    write_rows(res, list(rows[0]), rows[:2])
    rc, out, err = run(capsys, "tell", "--study", s, str(res))
    assert rc == 0, err and "told 2 values" in out
    (tmp_path / "plain.csv").write_text("id,value\n2,0.5\n")
    assert run(capsys, "tell", "--study", s, str(tmp_path / "plain.csv"))[0] == 0
    assert counts(s)["complete"] == 3


def test_tell_rejects_another_studys_file(tmp_path: Path, prior_dir: Path, capsys: Capture) -> None:
    a, batch_a = make_study(capsys, prior_dir, tmp_path / "a")
    b, _ = make_study(capsys, prior_dir, tmp_path / "b", seed=1)
    res = with_values(batch_a, tmp_path / "res.csv")
    rc, _, err = run(capsys, "tell", "--study", b, str(res))
    assert_one_line_error(rc, err, "another study")
    assert counts(b)["pending"] == 3
    # without the study column the designs still give it away (same ids, other x)
    header, rows = read_rows(res)
    header.remove("study")
    write_rows(res, header, [{k: r[k] for k in header} for r in rows])
    rc, _, err = run(capsys, "tell", "--study", b, str(res))
    assert_one_line_error(rc, err, "differ from the design")
    assert counts(b)["pending"] == 3
    assert run(capsys, "tell", "--study", a, str(res))[0] == 0  # but they fit study a


def test_tell_checks_the_x_columns_of_each_id(
    tmp_path: Path, prior_dir: Path, capsys: Capture
) -> None:
    s, batch = make_study(capsys, prior_dir, tmp_path / "a")
    header, rows = read_rows(batch)
    rows[1]["x1"] = repr(float(rows[1]["x1"]) + 1e-3)
    res = with_values(write_rows(tmp_path / "edited.csv", header, rows), tmp_path / "res.csv")
    rc, _, err = run(capsys, "tell", "--study", s, str(res))
    assert_one_line_error(rc, err, "line 3: the design columns of id 1 differ from the design")
    rows[1]["x1"] = "abc"
    res = with_values(write_rows(tmp_path / "edited.csv", header, rows), tmp_path / "res.csv")
    assert_one_line_error(*run(capsys, "tell", "--study", s, str(res))[::2], "not a number")
    header.remove("x1")
    write_rows(res, [*header, "value"], [{k: r[k] for k in header} | {"value": "1"} for r in rows])
    assert_one_line_error(*run(capsys, "tell", "--study", s, str(res))[::2], "missing x1")
    assert counts(s)["pending"] == 3


# ---------------------------------------------------------------------------- D5, D6, D7
def test_tell_reads_a_utf8_bom(tmp_path: Path, prior_dir: Path, capsys: Capture) -> None:
    s, _ = make_study(capsys, prior_dir, tmp_path / "a")
    res = tmp_path / "excel.csv"
    res.write_text("id,value\r\n0,1.5\r\n", encoding="utf-8-sig")
    rc, _, err = run(capsys, "tell", "--study", s, str(res))
    assert rc == 0, err
    assert counts(s)["complete"] == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("id,value\n0,1.0\n1\n", "line 3 has 1 field(s) but the header has 2"),
        ("id,value,value\n0,1.0,2.0\n", "duplicate column 'value'"),
        ("id,value\n0,0,25\n", "line 2 has 3 field(s) but the header has 2"),
        (b"id,value\n0,\xff\n", "not UTF-8"),
    ],
)
def test_malformed_results_files_are_rejected(
    tmp_path: Path, prior_dir: Path, capsys: Capture, content: str | bytes, message: str
) -> None:
    s, _ = make_study(capsys, prior_dir, tmp_path / "a")
    res = tmp_path / "res.csv"
    if isinstance(content, bytes):
        res.write_bytes(content)
    else:
        res.write_text(content)
    rc, _, err = run(capsys, "tell", "--study", s, str(res))
    assert_one_line_error(rc, err, message)
    assert counts(s)["pending"] == 3


def test_explicit_empty_or_nan_value_is_still_failed(
    tmp_path: Path, prior_dir: Path, capsys: Capture
) -> None:
    s, _ = make_study(capsys, prior_dir, tmp_path / "a")
    (tmp_path / "r.csv").write_text("id,value\n0,\n1,nan\n2,1\n")
    assert run(capsys, "tell", "--study", s, str(tmp_path / "r.csv"))[0] == 0
    assert counts(s) == {"pending": 0, "complete": 1, "failed": 2}


# ---------------------------------------------------------------------------- D8
@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("x0,x2,value", "missing x1; unexpected x2"),
        ("x0,x01,value", "missing x1; unexpected x01"),
        ("x0,x1,x2,value", "unexpected x2"),
        ("x1,x1,value", "duplicate column 'x1'"),
    ],
)
def test_add_needs_exactly_x0_to_xd(
    tmp_path: Path, prior_dir: Path, capsys: Capture, header: str, message: str
) -> None:
    s, _ = make_study(capsys, prior_dir, tmp_path / "a")
    width = len(header.split(","))
    data = tmp_path / "ext.csv"
    data.write_text(header + "\n" + ",".join(["0.5"] * width) + "\n")
    rc, _, err = run(capsys, "add", "--study", s, str(data))
    assert_one_line_error(rc, err, message)
    assert sum(counts(s).values()) == 3
    data.write_text("x1,x0,value\n0.5,0.25,1.0\n")  # any order of the right names is fine
    assert run(capsys, "add", "--study", s, str(data))[0] == 0
    x = Optimizer.load(s, attach=False).designs([3])
    assert x.tolist() == [[0.25, 0.5]]


# ---------------------------------------------------------------------------- D4, D13
def test_set_values_are_parsed_by_the_field_type(
    tmp_path: Path, prior_dir: Path, capsys: Capture
) -> None:
    s = str(tmp_path / "s")
    rc, _, err = run(
        capsys, "init", "--study", s, "--prior", str(prior_dir),
        "--set", "clear_buffer_each_round=False", "--set", "steps_per_round=3",
        "--set", "lr=none", "--set", 'surrogate_options={"steps": 5}', "--set", "progress=NO",
    )  # fmt: skip
    assert rc == 0, err
    config = Optimizer.load(s, attach=False).config  # old flat names land in config.finetune
    assert config.finetune.clear_buffer_each_round is False and config.progress is False
    assert config.finetune.steps == 3 and config.finetune.lr is None
    assert config.surrogate_options == {"steps": 5}


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["stepz=3"], "unknown SQDFOptimizerConfig field 'stepz'; valid fields: "),
        (["clear_buffer_each_round=Flase"], "expected a bool"),
        (
            ["steps_per_round=2.5"],
            "finetune.steps: expected an integer, got 2.5 (steps_per_round is now finetune.steps)",
        ),
        (["lr=inf"], "lr"),
        (['surrogate_options={"steps": 2.5}'], "steps: expected an integer"),
        (["gamma"], "--set expects KEY=VALUE"),
    ],
)
def test_bad_set_is_one_line_error_and_creates_nothing(
    tmp_path: Path, prior_dir: Path, capsys: Capture, sets: list[str], message: str
) -> None:
    s = tmp_path / "s"
    argv = ["init", "--study", str(s), "--prior", str(prior_dir)]
    for item in sets:
        argv += ["--set", item]
    rc, _, err = run(capsys, *argv)
    assert_one_line_error(rc, err, message)
    assert not s.exists()


def test_set_for_other_methods(tmp_path: Path, prior_dir: Path, capsys: Capture) -> None:
    base = ["--prior", str(prior_dir)]
    g = str(tmp_path / "g")
    rc, _, err = run(
        capsys, "init", "--study", g, *base, "--method", "gp-bo", "--box=-3,3",
        "--set", "max_train=8",
    )  # fmt: skip
    assert rc == 0, err
    assert Optimizer.load(g, attach=False).config.max_train == 8
    rc, _, err = run(
        capsys, "init", "--study", str(tmp_path / "h"), *base, "--method", "gp-bo",
        "--box=-3,3", "--set", "max_train=true",
    )  # fmt: skip
    assert_one_line_error(rc, err, "GPBOConfig.max_train: expected an integer")
    rc, _, err = run(
        capsys, "init", "--study", str(tmp_path / "p"), *base, "--method", "prior",
        "--set", "x=1",
    )  # fmt: skip
    assert_one_line_error(rc, err, "takes no config")


def test_huge_seed_is_rejected(tmp_path: Path, prior_dir: Path, capsys: Capture) -> None:
    s = tmp_path / "s"
    for seed, message in [
        (str(2**70), "seed must be < 2**62"),
        ("-1", "seed must be a non-negative int"),
        ("1.5", "expected an integer"),
    ]:
        argv = ["init", "--study", str(s), "--prior", str(prior_dir), "--seed", seed]
        assert_one_line_error(*run(capsys, *argv)[::2], message)
    assert not s.exists()
    prior = DiffusionPrior.load(prior_dir)
    with pytest.raises(ValueError, match=r"seed must be < 2\*\*62"):
        PriorSampler(prior, seed=2**70)
    with pytest.raises(ValueError, match=r"seed must be < 2\*\*62"):
        SQDF(prior, seed=2**70)  # checked before any generator is seeded from it
    assert PriorSampler(prior, seed=2**62 - 1).seed == 2**62 - 1


# ---------------------------------------------------------------------------- D10
def test_expected_errors_are_one_line(tmp_path: Path, prior_dir: Path, capsys: Capture) -> None:
    s, _ = make_study(capsys, prior_dir, tmp_path / "a")
    out = str(tmp_path / "big.csv")
    assert_one_line_error(*run(capsys, "ask", "--study", s, "--n", "1000000000000", "--out", out)[::2], "n=")  # fmt: skip
    assert_one_line_error(*run(capsys, "ask", "--study", s, "--n", "0", "--out", out)[::2], "n")
    assert_one_line_error(*run(capsys, "tell", "--study", s, str(tmp_path))[::2], "no such file")
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "study.sqlite").write_bytes(b"not a database at all" * 10)
    assert_one_line_error(*run(capsys, "status", "--study", str(bad))[::2], "sqdf-bbo:")
    assert counts(s)["pending"] == 3


# ---------------------------------------------------------------------------- D1
def test_fail_marks_points_failed_with_a_reason(
    tmp_path: Path, prior_dir: Path, capsys: Capture
) -> None:
    s, batch = make_study(capsys, prior_dir, tmp_path / "a", n=4)
    (tmp_path / "r.csv").write_text("id,value\n0,1.0\n1,2.0\n")
    assert run(capsys, "tell", "--study", s, str(tmp_path / "r.csv"))[0] == 0
    rc, out, err = run(capsys, "fail", "--study", s, "--ids", "1, 2", "--reason", "bad assay")
    assert rc == 0, err
    assert "marked 2 points failed" in out
    h = Optimizer.load(s, attach=False).history.set_index("id")
    assert list(h["state"]) == ["complete", "failed", "failed", "pending"]
    assert h.loc[1, "reason"] == "bad assay" and h.loc[2, "reason"] == "bad assay"
    # an ids file: the asked batch itself (its study column is checked)
    header, rows = read_rows(batch)
    write_rows(tmp_path / "ids.csv", header, rows[3:])
    assert run(capsys, "fail", "--study", s, "--ids-file", str(tmp_path / "ids.csv"))[0] == 0
    assert counts(s) == {"pending": 0, "complete": 1, "failed": 3}
    rc, out, err = run(capsys, "status", "--study", s, "--json")
    assert json.loads(out)["failed"] == 3


def test_fail_errors_change_nothing(tmp_path: Path, prior_dir: Path, capsys: Capture) -> None:
    s, _ = make_study(capsys, prior_dir, tmp_path / "a")
    other, other_batch = make_study(capsys, prior_dir, tmp_path / "b", seed=1)
    header, rows = read_rows(other_batch)
    no_study = write_rows(
        tmp_path / "ns.csv", header[:-1], [{k: r[k] for k in header[:-1]} for r in rows]
    )
    for argv, message in [
        (["--ids-file", str(no_study)], "differ from the design"),
        (["--ids", "0,99"], "unknown id 99"),
        (["--ids", "0,x"], "'x' is not an integer"),
        (["--ids", "0,0"], "twice"),
        (["--ids-file", str(other_batch)], "another study"),
        (["--ids", "0", "--ids-file", str(other_batch)], "not allowed with"),
        ([], "one of the arguments --ids --ids-file is required"),
    ]:
        rc, _, err = run(capsys, "fail", "--study", s, *argv)
        assert_one_line_error(rc, err, message)
    assert counts(s)["pending"] == 3 and counts(other)["pending"] == 3
