"""Designs in the user's units: the airfoil prior's CSV files carry the 18 Kulfan parameters
under their names; tell and add read them back; the optimizers still see standardized z."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from sqdf_bbo.cli import main
from sqdf_bbo.data import KULFAN_NAMES
from sqdf_bbo.diffusion.priors import load_prior, load_standardization
from sqdf_bbo.diffusion.units import DesignUnits
from sqdf_bbo.optimizers.base import Optimizer

FAST = [
    "--set", "finetune.steps=2",
    "--set", "finetune.transitions_per_step=8",
    "--set", "finetune.rollouts_per_step=2",
    "--set", "progress=false",
    "--set", 'surrogate_options={"steps": 10, "n_heads": 2}',
]  # fmt: skip


def rows_of(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def write(path: Path, header: list[str], rows: list[dict[str, object]]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, header)
        w.writeheader()
        w.writerows(rows)
    return path


def test_units_map_both_ways_and_refuse_bad_input() -> None:
    u = DesignUnits(("a", "b"), (1.0, -2.0), (0.5, 4.0))
    x = np.array([[0.3, -1.2]])
    np.testing.assert_allclose(u.to_user(x), [[1.15, -6.8]])
    np.testing.assert_allclose(u.from_user(u.to_user(x)), x)
    assert DesignUnits.from_dict(u.to_dict()) == u
    with pytest.raises(ValueError, match="scales finite and > 0"):
        DesignUnits(("a",), (0.0,), (0.0,))
    with pytest.raises(ValueError, match="unique"):
        DesignUnits(("a", "a"), (0.0, 0.0), (1.0, 1.0))


def test_the_airfoil_prior_carries_the_kulfan_standardization() -> None:
    prior = load_prior("airfoil")
    std = load_standardization("airfoil")
    assert prior.units is not None and prior.units.names == KULFAN_NAMES
    z = np.random.default_rng(0).normal(size=(3, 18))
    np.testing.assert_allclose(prior.units.to_user(z), std.to_kulfan(z))


def test_airfoil_csvs_carry_kulfan_parameters_and_read_them_back(tmp_path: Path) -> None:
    s = str(tmp_path / "study")
    assert main(["init", "--study", s, "--prior", "airfoil", "--batch-size", "3", *FAST]) == 0
    out = tmp_path / "batch.csv"
    assert main(["ask", "--study", s, "--out", str(out)]) == 0
    header, rows = rows_of(out)
    assert header[1:19] == list(KULFAN_NAMES) and not any(h.startswith("x0") for h in header)
    opt = Optimizer.load(s, attach=False)
    z = opt.designs([int(r["id"]) for r in rows]).double().numpy()
    k = np.array([[float(r[n]) for n in KULFAN_NAMES] for r in rows])
    np.testing.assert_allclose(k, load_standardization("airfoil").to_kulfan(z), rtol=1e-12)
    # tell with the asked file (its Kulfan columns are checked against the stored designs)
    for i, r in enumerate(rows):
        r["value"] = str(0.1 * i)
    told = write(tmp_path / "told.csv", [*header, "value"], rows)
    assert main(["tell", "--study", s, str(told)]) == 0
    # a Kulfan column edited: the file no longer matches the asked designs
    rows[0][KULFAN_NAMES[3]] = str(float(rows[0][KULFAN_NAMES[3]]) + 0.05)
    assert (
        main(["tell", "--study", s, str(write(tmp_path / "bad.csv", [*header, "value"], rows))])
        == 2
    )
    # add: an archive in Kulfan parameters becomes standardized designs
    archive = [{**{n: rows[1][n] for n in KULFAN_NAMES}, "value": "0.7"}]
    added = write(tmp_path / "add.csv", [*KULFAN_NAMES, "value"], archive)
    assert main(["add", "--study", s, str(added)]) == 0
    opt = Optimizer.load(s, attach=False)
    last = opt.designs([len(opt) - 1]).double().numpy()
    np.testing.assert_allclose(last, z[1:2], rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(opt.designs([int(rows[1]["id"])]), opt.designs([len(opt) - 1]))
