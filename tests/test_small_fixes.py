"""Issue 16, item 7: numbers read strictly (no ``1_0``, full-width digits or silent overflow),
``add`` checks a ``study`` column, a ``values.csv`` folder fails once, nested ``--set``
mappings, and error texts that no longer contradict themselves."""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import pytest
import torch

from oracles import CommandOracle
from sqdf_bbo.cli.csvio import parse_value
from sqdf_bbo.cli.errors import CLIError
from sqdf_bbo.config import ConfigError, parse_field
from sqdf_bbo.finetuning.configs import SQDFConfig
from sqdf_bbo.finetuning.sqdf import SQDFTrainer
from sqdf_bbo.optimizers.base import Optimizer
from sqdf_bbo.optimizers.sqdf import SQDFOptimizerConfig
from sqdf_bbo.text import parse_integer, parse_real
from tests.test_cli_hardening import (
    assert_one_line_error,
    counts,
    make_study,
    prior_dir,
    run,
    study_uid,
)
from tests.test_sqdf import gaussian_prior

__all__ = ["prior_dir"]  # the fixture, re-used

Capture = pytest.CaptureFixture[str]


@pytest.mark.parametrize("text", ["1_0", "１２", "0x10", "1e3", "", " ", "++1", "1.0"])
def test_integers_are_ascii_digits_only(text: str) -> None:
    with pytest.raises(ValueError):
        parse_integer(text)


@pytest.mark.parametrize("text", ["1_000", "１２", "1e400", "-1e400", "0x1p3", "1,5", "nan1"])
def test_reals_are_ascii_decimal_only_and_never_overflow_silently(text: str) -> None:
    with pytest.raises(ValueError):
        parse_real(text)


def test_the_spellings_that_stay_valid() -> None:
    assert parse_integer(" -7 ") == -7
    assert parse_real("1e-3") == 1e-3 and parse_real(".5") == 0.5 and parse_real("5.") == 5.0
    assert parse_real("-Infinity") == -math.inf and math.isnan(parse_real("NaN"))
    assert parse_real("1e400", overflow=True) == math.inf


def write(path: Path, header: list[str], rows: list[list[str]]) -> str:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return str(path)


@pytest.mark.parametrize(
    "row, fragment",
    [
        (["0", "1e400"], "value '1e400' is too large for a float"),
        (["1_0", "1.0"], "id '1_0' is not an integer"),
        (["０", "1.0"], "is not an integer"),
        (["0", "1_0"], "is not a number"),
    ],
)
def test_cli_tell_refuses_numbers_python_would_bend(
    row: list[str], fragment: str, prior_dir: Path, tmp_path: Path, capsys: Capture
) -> None:
    study, _ = make_study(capsys, prior_dir, tmp_path / "s", n=3)
    path = write(tmp_path / "r.csv", ["id", "value"], [row])
    rc, _, err = run(capsys, "tell", "--study", study, path)
    assert_one_line_error(rc, err, fragment)
    assert counts(study)["pending"] == 3
    with pytest.raises(CLIError):
        parse_value("1e400", "here")


def test_cli_add_refuses_another_studys_file(prior_dir: Path, tmp_path: Path, capsys) -> None:
    study, _ = make_study(capsys, prior_dir, tmp_path / "s", n=2)
    other = write(tmp_path / "a.csv", ["x0", "x1", "value", "study"], [["0", "0", "1", "feed"]])
    rc, _, err = run(capsys, "add", "--study", study, other)
    assert_one_line_error(rc, err, "from another study")
    mine = write(tmp_path / "b.csv", ["x0", "x1", "value", "study"],
                 [["0", "0", "1", study_uid(study)]])  # fmt: skip
    assert run(capsys, "add", "--study", study, mine)[0] == 0
    assert counts(study)["complete"] == 1


def command(tmp_path: Path, body: str) -> CommandOracle:
    script = tmp_path / "sim.py"
    script.write_text("import os, sys\nout = sys.argv[2]\n" + body)
    return CommandOracle([sys.executable, str(script)], shape=(2,))


def test_command_output_is_read_strictly(tmp_path: Path) -> None:
    oracle = command(tmp_path, "open(out, 'w').write('1_000\\n１２\\n1e400\\n2.5\\n')\n")
    y = oracle(torch.zeros(4, 2))
    assert torch.isnan(y[:3]).all() and float(y[3]) == 2.5
    assert oracle.failures[0].startswith("unparsable output line 1")
    assert oracle.failures[1].startswith("unparsable output line 2")
    assert oracle.failures[2] == "program returned 1e400"


def test_values_csv_written_as_a_folder_fails_once(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    oracle = command(
        tmp_path,
        f"open(os.path.join({str(runs)!r}, str(os.getpid())), 'w').close()\nos.mkdir(out)\n",
    )
    y = oracle(torch.zeros(3, 2))
    assert torch.isnan(y).all()
    assert set(oracle.failures.values()) == {
        "output values.csv is not a regular file (a folder or a link)"
    }
    assert len(list(runs.iterdir())) == 1, "the program ran once, not once per point"


def test_a_nested_config_can_be_set_as_a_json_mapping(prior_dir, tmp_path, capsys) -> None:
    value = parse_field(SQDFOptimizerConfig, "finetune", '{"steps": 2}')
    assert value == SQDFConfig(steps=2)
    with pytest.raises(ConfigError, match="lr must be in"):
        parse_field(SQDFOptimizerConfig, "finetune", '{"lr": 1e300}')
    with pytest.raises(ConfigError, match="expected an integer"):
        parse_field(SQDFOptimizerConfig, "finetune.steps", "1_0")
    rc, _, err = run(capsys, "init", "--study", str(tmp_path / "s"), "--prior", str(prior_dir),
                     "--set", 'finetune={"steps": 2}')  # fmt: skip
    assert rc == 0, err
    cfg = Optimizer.load(tmp_path / "s", attach=False).config
    assert cfg.finetune.steps == 2 and cfg.finetune == SQDFConfig(steps=2)


def test_one_denoising_step_says_why_the_sampler_is_deterministic() -> None:
    with pytest.raises(ValueError) as info:
        SQDFTrainer(gaussian_prior(K=4), SQDFConfig(num_inference_steps=1, eta=1.0))
    message = str(info.value)
    assert "use num_inference_steps >= 2" in message and "set SQDFConfig(eta=1.0)" not in message
    with pytest.raises(ValueError, match=r"set SQDFConfig\(eta=1.0\)"):
        SQDFTrainer(gaussian_prior(K=4).with_settings(eta=0.0), SQDFConfig(eta=None))
