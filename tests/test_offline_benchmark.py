"""The offline benchmark's parts (benchmarks/offline): archives, baselines, report."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from benchmarks.airfoil_tasks import airfoil_start
from benchmarks.offline.archives import build_archive, evaluate
from benchmarks.offline.methods import BATCH, _ensemble, propose
from benchmarks.offline.report import offline_table, queries_to_reach
from benchmarks.offline.visible_prior import visible_prior
from benchmarks.offline.xfoil_check import archive_xfoil_best, judge_batches
from benchmarks.train_priors import AIRFOIL_RECIPE, _quick


@pytest.fixture(scope="module")
def rings():
    return build_archive("rings")


def test_archive_hides_the_best_tenth_and_normalizes_by_the_full_range(rings) -> None:
    y = rings.y
    assert len(y) == 1000 and np.isfinite(y).all()
    assert (~rings.visible).sum() == 100
    assert y[~rings.visible].min() >= y[rings.visible].max()
    z = rings.normalized(np.array([y.min(), y.max(), (y.min() + y.max()) / 2, np.nan]))
    assert np.allclose(z, [0.0, 1.0, 0.5, 0.0])
    x, seen, reasons = rings.seen()
    assert x.shape == (900, 2) and len(seen) == 900 and reasons == [None] * 900
    with pytest.raises(ValueError, match="hidden"):
        build_archive("rings", hidden=1.0)
    with pytest.raises(ValueError, match="no archive"):
        build_archive("digits-ink")


def test_surrogate_baselines_propose_in_the_box_and_climb_the_surrogate(rings) -> None:
    x, y, _ = rings.seen()
    best, _ = propose("archive-best", rings, 0)
    assert best.shape == (BATCH, 2)
    order = np.sort(y)[::-1][:BATCH]
    assert np.allclose(np.sort(rings_values(best))[::-1], order)
    sur = _ensemble(x, y, 0)
    for method in ("grad-ascent", "cma-es"):
        prop, opt = propose(method, rings, 0)
        assert opt is None and prop.shape == (BATCH, 2)
        assert float(prop.abs().max()) <= 4.0 + 1e-6  # the rings box [-4, 4]
        with torch.no_grad():
            gain = float(sur.mean(prop).mean() - sur.mean(best).mean())
        assert gain > 0, f"{method} should raise the surrogate mean over its start"


def rings_values(x: torch.Tensor) -> np.ndarray:
    return evaluate("rings", x)[0]


def test_queries_to_reach_and_tables() -> None:
    rows = []
    for start, bests in (("warm", [0.5, 0.7, 0.9, 0.95]), ("cold", [0.3, 0.6, 0.8, 0.85])):
        for r, b in enumerate(bests, 1):
            rows.append(
                {"task": "t", "seed": 0, "start": start, "round": r, "queries": 128 * r}
                | {"best": b, "with_archive": b}
            )
    online = pd.DataFrame(rows)
    assert queries_to_reach(online, "t", 0, archive_best=0.4) == (384.0, 0.85)
    assert queries_to_reach(online, "t", 0, archive_best=0.9) == (0.0, 0.85)
    never = online.assign(with_archive=online["with_archive"] * 0.5)
    q, target = queries_to_reach(never, "t", 0, archive_best=0.1)
    assert math.isnan(q) and target == 0.85
    frame = pd.DataFrame(
        [
            {"task": "t", "seed": s, "method": "sqdf", "p100": v, "p50": 0.5}
            | {"natural_frac": 1.0, "vendi": 2.0}
            for s, v in ((0, 1.0), (1, 0.8))
        ]
    )
    table = offline_table(frame)
    assert "| sqdf | 0.90 ± 0.10 | 0.50 ± 0.00 | 1.00 ± 0.00 | 2.00 ± 0.00 |" in table


def test_visible_prior_trains_on_the_visible_archive_and_reloads(tmp_path) -> None:
    with pytest.raises(ValueError, match="no visible-only prior"):
        visible_prior(build_archive("rings"), tmp_path / "r")
    archive = build_archive("airfoil-ld")
    assert (~archive.visible).sum() == 67 and archive.seen()[0].shape == (1672, 18)
    prior = visible_prior(archive, tmp_path / "p", recipe=_quick(AIRFOIL_RECIPE))
    again = visible_prior(archive, tmp_path / "p")  # loaded, not trained again
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert prior.name == "airfoil-visible" and prior.consistency is not None
    assert torch.allclose(prior.sample(4, gen()).x, again.sample(4, gen()).x, atol=1e-6)


def test_xfoil_check_judges_a_saved_batch(tmp_path) -> None:
    """One saved airfoil batch (NACA 2412 and a copy): one distinct design judged by XFoil,
    converged, close to NeuralFoil there (a real, well-known airfoil)."""
    if shutil.which("xfoil") is None:
        pytest.skip("XFoil is not installed (apt-get install xfoil)")
    (tmp_path / "designs").mkdir()
    x = torch.stack([airfoil_start(), airfoil_start()]).numpy()
    np.save(tmp_path / "designs" / "airfoil-ld-0-sqdf.npy", x)
    table = judge_batches(tmp_path)
    row = table.iloc[0]
    assert (row["method"], row["seed"], row["judged"]) == ("sqdf", 0, 1)
    assert row["xfoil_conv_a5"] == 1.0 and 40 < row["xfoil_best_a5"] < 200
    assert abs(row["nf_gap_a5"]) < 0.1 * row["xfoil_best_a5"]
    ref = archive_xfoil_best()
    assert ref["visible"] <= ref["full"]
