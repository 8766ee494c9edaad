"""Write tests/data/ehrlich_holo_reference.npz: pytorch-holo's Ehrlich outputs for three instances.

tests/test_ehrlich.py compares ``oracles.EhrlichOracle`` with this file, so the test suite
needs no holo. Regenerate it (holo 0.0.5 pins numpy < 2 but its closed-form functions run
with numpy 2 when installed without dependencies; it imports pooch at import time)::

    pip install --no-deps --target /tmp/holo_site pytorch-holo==0.0.5 pooch platformdirs
    PYTHONPATH=/tmp/holo_site python scripts/ehrlich_reference.py

For each instance (v, L, c, k, q, epistasis, seed) it stores holo's transition matrix,
motifs, spacings, ``initial_solution(16)`` and the noise-free values (``evaluate_true``,
−inf for infeasible sequences) of 1,000 sequences: 300 chain samples, 500 mutants of holo's
``optimal_solution()`` (each position replaced by a uniform state with a probability drawn
uniformly in [0, 0.3]) and 200 uniform random sequences.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from holo.test_functions.closed_form import Ehrlich  # not a dependency: see the docstring

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "ehrlich_holo_reference.npz"
INSTANCES = [  # (num_states, dim, num_motifs, motif_length, quantization, epistasis, seed)
    (32, 32, 4, 4, 4, 0.0, 0),
    (32, 128, 4, 4, 4, 0.0, 1),
    (16, 64, 2, 6, 3, 0.5, 3),
]


def sequences(f: Ehrlich, rng: np.random.Generator) -> np.ndarray:
    """The 1,000 test sequences of one instance, ``(1000, L)``."""
    v, L = f.num_states, f.dim
    chain = f.initial_solution(2000)[1000:1300].numpy()  # 300 chain samples
    opt = f.optimal_solution().numpy()
    rates = rng.uniform(0.0, 0.3, size=(500, 1))
    mutate = rng.uniform(size=(500, L)) < rates
    mutants = np.where(mutate, rng.integers(0, v, size=(500, L)), opt[None, :])
    uniform = rng.integers(0, v, size=(200, L))
    return np.concatenate([chain, mutants, uniform]).astype(np.int64)


def main() -> None:
    rng = np.random.default_rng(0)
    arrays: dict[str, np.ndarray] = {"instances": np.array(INSTANCES, dtype=np.float64)}
    for i, (v, L, c, k, q, eps, seed) in enumerate(INSTANCES):
        f = Ehrlich(v, L, c, k, q, epistasis_factor=eps, random_seed=seed)
        x = sequences(f, rng)
        y = f.evaluate_true(torch.as_tensor(x)).double().numpy()
        arrays[f"tokens{i}"] = x.astype(np.uint8)
        arrays[f"values{i}"] = y
        arrays[f"transition{i}"] = f.transition_matrix.double().numpy()
        arrays[f"motifs{i}"] = torch.stack(list(f.motifs)).numpy()
        arrays[f"spacings{i}"] = torch.stack(list(f.spacings)).numpy()
        arrays[f"initial{i}"] = f.initial_solution(16).numpy()
        arrays[f"optimal{i}"] = f.optimal_solution().numpy()
        feas = np.isfinite(y)
        print(
            f"instance {i} {(v, L, c, k, q, eps, seed)}: feasible {feas.mean():.3f}, "
            f"values {np.unique(y[feas]).round(4).tolist()[:12]}"
        )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
