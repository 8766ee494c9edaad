"""Absurd settings (issue 16, item 4): finite but absurd values of every kind of setting are
refused when the config is made (CLI ``init --set``: exit 2 with one line and no study; the
API: ``ConfigError``), and a study's settings can be changed afterwards with ``sqdf-bbo
config --set`` (recorded and reloaded) while an absurd or impossible change is refused and
changes nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.reliability.common import (
    Probe,
    Sizes,
    cli_call,
    cli_study,
    one_line,
    one_line_error,
    tiny_prior,
    tree_digest,
)
from oracles.airfoil import NeuralFoilConfig
from sqdf_bbo.config import ConfigError
from sqdf_bbo.optimizers.base import Optimizer
from sqdf_bbo.optimizers.cmaes import CMAESConfig
from sqdf_bbo.optimizers.gp_bo import GPBOConfig
from sqdf_bbo.optimizers.seiko import SEIKOConfig
from sqdf_bbo.optimizers.sqdf import SQDFOptimizerConfig
from sqdf_bbo.surrogates import EnsembleConfig, GPConfig, UCBConfig

INIT_SETS = (
    "finetune.lr=1e300",
    "finetune.kl_weight=1e300",
    'surrogate_options={"lr": 1e300}',
    "finetune.lr=1e10",
    "finetune.weight_decay=1e300",
    "finetune.buffer_capacity=1e12",
    "finetune.steps=1e9",
    "finetune.num_inference_steps=1000000",
    'surrogate_options={"n_heads": 1000000}',
    "reward_cap=1e300",
    "finetune.gamma=2",
    'finetune={"lr": 1e300}',
)

API_CONFIGS: tuple[tuple[str, Callable[[], Any]], ...] = (
    ('SQDFOptimizerConfig(finetune={"lr": 1e300})',
     lambda: SQDFOptimizerConfig(finetune={"lr": 1e300})),
    ('SEIKOConfig(finetune={"lr": 1e10})', lambda: SEIKOConfig(finetune={"lr": 1e10})),
    ("EnsembleConfig(lr=1e300)", lambda: EnsembleConfig(lr=1e300)),
    ("UCBConfig(beta=1e300)", lambda: UCBConfig(beta=1e300)),
    ("GPConfig(max_points=10**8)", lambda: GPConfig(max_points=10**8)),
    ("GPBOConfig(max_train=10**9)", lambda: GPBOConfig(max_train=10**9)),
    ("CMAESConfig(popsize=10**9)", lambda: CMAESConfig(popsize=10**9)),
    ("NeuralFoilConfig(Re=1e300)", lambda: NeuralFoilConfig(Re=1e300)),
    ("NeuralFoilConfig(alpha=1e6)", lambda: NeuralFoilConfig(alpha=1e6)),
)  # fmt: skip

CHANGES = (
    ("config --set finetune.lr=1e300", "finetune.lr=1e300", False),
    ("config --set finetune.buffer_capacity=64", "finetune.buffer_capacity=64", False),
    ("config --set finetune.no_such=1", "finetune.no_such=1", False),
    ("config --set finetune.lr=0.0005", "finetune.lr=0.0005", True),
)

SETTING_CASES = (
    *(f"init --set {s}" for s in INIT_SETS),
    *(name for name, _ in API_CONFIGS),
    *(name for name, _, _ in CHANGES),
)


def init_probe(setting: str, work: Path, k: int) -> Probe:
    """``sqdf-bbo init --set SETTING``: exit 2, one stderr line, no study folder."""
    prior, study = work / "prior", work / f"init-{k:02d}"
    if not prior.exists():
        tiny_prior().save(prior)
    rc, _, err = cli_call(["init", "--study", str(study), "--prior", str(prior), "--set", setting])
    ok = one_line_error(rc, err) and not study.exists()
    outcome = "exit 2, one line, no study" if ok else f"exit {rc}: {one_line(err, 100)}"
    return Probe(
        "absurd settings", f"init --set {setting}", outcome, ok=ok, detail=one_line(err, 160)
    )


def api_probe(name: str, make: Callable[[], Any]) -> Probe:
    """Building the config must raise ``ConfigError`` naming the setting."""
    outcome, detail = "ACCEPTED", ""
    try:
        make()
    except ConfigError as err:
        outcome, detail = "refused (ConfigError)", one_line(str(err), 160)
    except Exception as err:  # noqa: BLE001 - a wrong type is the finding
        outcome, detail = f"wrong error {type(err).__name__}", one_line(str(err), 160)
    return Probe("absurd settings", name, outcome, ok=outcome.startswith("refused"), detail=detail)


def change_probe(name: str, setting: str, valid: bool, study: Path) -> Probe:
    """``sqdf-bbo config --set``: a valid change is recorded and reloaded; another one exits
    2 with one line and leaves the study byte-identical."""
    before = tree_digest(study)
    rc, out, err = cli_call(["config", "--study", str(study), "--set", setting])
    if not valid:
        ok = one_line_error(rc, err) and tree_digest(study) == before
        outcome = "exit 2, one line, study unchanged" if ok else f"exit {rc}, changed"
        return Probe("absurd settings", name, outcome, ok=ok, detail=one_line(err, 160))
    key, _, raw = setting.partition("=")
    rc2, shown, _ = cli_call(["config", "--study", str(study)])
    doc = json.loads(shown) if rc2 == 0 else {}
    recorded = doc.get("changes", [{}])[-1].get("changes", {}).get(key, [None, None])[1]
    reloaded = Optimizer.load(study, attach=False).config.finetune.lr
    ok = rc == 0 and recorded == float(raw) and reloaded == float(raw)
    outcome = "changed, recorded, reloaded" if ok else f"exit {rc}: {one_line(err or out, 100)}"
    return Probe("absurd settings", name, outcome, ok=ok)


def settings_probes(work: Path, sizes: Sizes, seed: int, log: Callable[[str], None]) -> list[Probe]:
    """Every settings case (or those named in ``sizes.setting_cases``)."""
    chosen = sizes.setting_cases
    probes = [
        init_probe(s, work, k)
        for k, s in enumerate(INIT_SETS)
        if chosen is None or f"init --set {s}" in chosen
    ]
    probes += [api_probe(n, make) for n, make in API_CONFIGS if chosen is None or n in chosen]
    changes = [c for c in CHANGES if chosen is None or c[0] in chosen]
    if changes:
        study, _ = cli_study(work, "change", n=4)
        probes += [change_probe(name, s, valid, study) for name, s, valid in changes]
    log(f"  {len(probes)} settings probes")
    return probes
