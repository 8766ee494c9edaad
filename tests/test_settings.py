"""Settings (issue 16, item 4): every numeric setting of every config has a sane range that
is checked at construction, so absurd values never make a study; and a study's settings can
be changed afterwards (API and CLI), recorded in the study and reloaded."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sqlite3
import typing
from pathlib import Path

import pytest
import torch

from oracles.airfoil import NeuralFoilConfig
from sqdf_bbo.classifier import ClassifierTrainConfig
from sqdf_bbo.config import ConfigError, limits_of
from sqdf_bbo.finetuning.configs import SEIKOTrainConfig, SQDFConfig
from sqdf_bbo.optimizers.base import Optimizer
from sqdf_bbo.optimizers.cmaes import CMAES, CMAESConfig
from sqdf_bbo.optimizers.gp_bo import GPBOConfig
from sqdf_bbo.optimizers.seiko import SEIKOConfig
from sqdf_bbo.optimizers.sqdf import SQDF, SQDFOptimizerConfig
from sqdf_bbo.study.store import DB_NAME, StudyError, StudyStore
from sqdf_bbo.surrogates import EnsembleConfig, GPConfig, UCBConfig
from tests.test_cli_hardening import assert_one_line_error, prior_dir, run
from tests.test_sqdf_optimizer import FAST, tiny_prior

__all__ = ["prior_dir"]  # the fixture, re-used

CONFIGS = (
    SQDFConfig,
    SEIKOTrainConfig,
    SQDFOptimizerConfig,
    SEIKOConfig,
    EnsembleConfig,
    UCBConfig,
    GPConfig,
    CMAESConfig,
    GPBOConfig,
    ClassifierTrainConfig,
    NeuralFoilConfig,
)


def numeric_fields(config_class: type) -> list[str]:
    """Fields typed int or float (optional or not), bools excluded."""
    hints = typing.get_type_hints(config_class)
    out = []
    for f in dataclasses.fields(config_class):
        options = set(typing.get_args(hints[f.name])) or {hints[f.name]}
        if options & {int, float}:
            out.append(f.name)
    return out


@pytest.mark.parametrize("config_class", CONFIGS, ids=lambda c: c.__name__)
def test_every_numeric_setting_has_a_range(config_class: type) -> None:
    missing = sorted(set(numeric_fields(config_class)) - set(limits_of(config_class)))
    assert not missing, f"{config_class.__name__} fields without a range: {missing}"


CASES = [
    (cls, name, value)
    for cls in CONFIGS
    for name, allowed in limits_of(cls).items()
    for value in (allowed.high * 10 + 1, allowed.low - 1)
    if name in numeric_fields(cls)
]


@pytest.mark.parametrize(
    "config_class, name, value", CASES, ids=[f"{c.__name__}.{n}={v:g}" for c, n, v in CASES]
)
def test_a_setting_outside_its_range_is_refused_with_its_name(
    config_class: type, name: str, value: float
) -> None:
    tp = typing.get_type_hints(config_class)[name]
    value = int(value) if int in (set(typing.get_args(tp)) or {tp}) else float(value)
    with pytest.raises(ConfigError, match=f"{name} must be in "):
        config_class(**{name: value})


@pytest.mark.parametrize(
    "setting",
    [
        "finetune.lr=1e300",
        "finetune.kl_weight=1e300",
        'surrogate_options={"lr": 1e300}',
        "finetune.lr=1e10",
        "finetune.weight_decay=1e300",
        "finetune.buffer_capacity=1e12",
    ],
)
def test_init_refuses_the_absurd_settings_of_the_issue(
    setting: str, prior_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = tmp_path / "s"
    rc, _, err = run(capsys, "init", "--study", str(study), "--prior", str(prior_dir),
                     "--set", setting)  # fmt: skip
    assert_one_line_error(rc, err, "must be in ")
    assert not study.exists()


def test_unknown_surrogate_options_are_refused_when_the_config_is_made() -> None:
    with pytest.raises(ConfigError, match="unknown EnsembleConfig option"):
        SQDFOptimizerConfig(surrogate_options={"n_head": 2})


# ---------------------------------------------------------------------------- changing a study
def meta(study: Path) -> dict:
    conn = sqlite3.connect(f"file:{study / DB_NAME}?mode=ro", uri=True)
    try:
        return {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM meta")}
    finally:
        conn.close()


def told_study(tmp_path: Path) -> Path:
    opt = SQDF(tiny_prior(), batch_size=4, seed=0, config=FAST, study=tmp_path / "s")
    b = opt.ask()
    opt.tell(b.ids, (-(b.x**2).sum(1)).tolist())
    opt.ask()
    opt.close()
    return tmp_path / "s"


def test_settings_change_is_recorded_and_reloaded(tmp_path: Path) -> None:
    study = told_study(tmp_path)
    changes = {"finetune.lr": 5e-4, "surrogate_options": {"steps": 10, "n_heads": 2}}
    opt = Optimizer.load(study, config_changes=changes)
    assert opt.config.finetune.lr == 5e-4 and opt.surrogate.config.steps == 10
    assert opt.trainer.optimizer.param_groups[0]["lr"] == 5e-4
    b = opt.ask()  # it continues
    opt.tell(b.ids, [1.0] * len(b))
    opt.close()
    (entry,) = meta(study)["config_changes"]
    assert entry["changes"] == {
        "finetune.lr": [None, 5e-4],
        "surrogate_options": [{"steps": 20, "n_heads": 2}, {"steps": 10, "n_heads": 2}],
    }
    assert entry["at"] > 0
    again = Optimizer.load(study, attach=False)
    assert again.config.finetune.lr == 5e-4 and again.surrogate.config.steps == 10


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"finetune.lr": 1e300}, "lr must be in (0, 1]"),
        ({"finetune.no_such": 1}, "unknown SQDFConfig field 'no_such'"),
        ({"finetune.buffer_capacity": 64}, "buffer_capacity cannot change"),
        ({"surrogate": "gp"}, "unknown GPConfig option(s) ['n_heads', 'steps']"),
        ({"surrogate": "gp", "surrogate_options": {}}, "state_dict is for surrogate 'ensemble'"),
    ],
)
def test_a_change_that_cannot_apply_is_refused_and_not_recorded(
    changes: dict, fragment: str, tmp_path: Path
) -> None:
    study = told_study(tmp_path)
    before = meta(study)
    with pytest.raises(StudyError, match=re.escape(fragment)):
        Optimizer.load(study, config_changes=changes)
    assert meta(study) == before
    Optimizer.load(study).close()  # and the study still attaches


def test_cma_es_settings_cannot_change(tmp_path: Path) -> None:
    pytest.importorskip("cma")
    CMAES((2,), batch_size=4, study=tmp_path / "c").close()
    with pytest.raises(StudyError, match="CMA-ES fixes its settings"):
        Optimizer.load(tmp_path / "c", config_changes={"sigma0_fraction": 0.3})


def test_a_study_with_absurd_settings_is_repaired_from_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A study written before the ranges existed, with lr 1e300: it no longer loads (a clear
    error), `sqdf-bbo config --set` repairs it, and it continues."""
    study = told_study(tmp_path)
    store = StudyStore.open(study)
    spec = store.read_meta()["spec"]
    spec["config"]["finetune"]["lr"] = 1e300
    store.update_meta({"spec": spec})
    store.close()
    with pytest.raises(StudyError, match=r"lr must be in \(0, 1\], got 1e\+300"):
        Optimizer.load(study, attach=False)
    rc, out, err = run(capsys, "config", "--study", str(study), "--set", "finetune.lr=1e-4")
    assert rc == 0, err
    assert "finetune.lr: 1e+300 -> 0.0001" in out
    rc, out, err = run(capsys, "config", "--study", str(study))
    assert rc == 0, err
    shown = json.loads(out)
    assert shown["settings"]["finetune.lr"] == 1e-4
    assert shown["changes"][-1]["changes"] == {"finetune.lr": [1e300, 1e-4]}
    opt = Optimizer.load(study)
    b = opt.ask()
    opt.tell(b.ids, [0.5] * len(b))
    assert math.isfinite(opt.best().value)
    opt.close()
    rc, _, err = run(capsys, "config", "--study", str(study), "--set", "finetune.lr=2")
    assert_one_line_error(rc, err, "lr must be in (0, 1]")


def test_unchanged_values_record_nothing(tmp_path: Path, capsys) -> None:
    study = told_study(tmp_path)
    before = meta(study)
    rc, out, _ = run(capsys, "config", "--study", str(study), "--set", "finetune.steps=3")
    assert rc == 0 and "no setting" in out
    assert meta(study) == before


def test_a_detached_load_with_changes_writes_nothing(tmp_path: Path) -> None:
    study = told_study(tmp_path)
    before = meta(study)
    opt = Optimizer.load(study, attach=False, config_changes={"finetune.steps": 5})
    assert opt.config.finetune.steps == 5
    assert meta(study) == before
    assert torch.isfinite(opt.ask(2).x).all()
