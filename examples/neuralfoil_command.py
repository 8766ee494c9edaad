"""NeuralFoil as an external program, for :class:`oracles.CommandOracle` (the file protocol).

A lab or HPC user's simulator runs out of process: the optimizer writes the designs to a
file, runs a program, and reads the values back (``oracles/command.py``). This script is
such a program for the airfoil task; it scores exactly what the in-process
``NeuralFoilOracle`` scores (same geometry checks, same NeuralFoil call)::

    python examples/neuralfoil_command.py [options] DESIGNS.npy VALUES.csv

reads ``DESIGNS.npy`` (float64 ``(n, 18)``: Kulfan vectors, or standardized vectors with
``--standardized``) and writes ``VALUES.csv``: line i is the L/D of design i, or
``nan,<reason>`` when it failed (thin, self-intersecting, non-finite). From Python::

    import sys
    from oracles import CommandOracle
    oracle = CommandOracle(
        [sys.executable, "examples/neuralfoil_command.py", "--standardized"], shape=(18,),
        timeout=120,
    )
    y = oracle(batch.x)            # (n,) float64, NaN where failed; reasons in oracle.failures

Options mirror :class:`oracles.airfoil.NeuralFoilConfig`: ``--model-size`` (xlarge),
``--alpha`` (5), ``--re`` (1e6), ``--n-crit`` (9), ``--min-thickness`` (0.12; ``none``
disables it). ``--standardized`` maps z to Kulfan vectors with the shipped airfoil prior's
standardization first. Needs the ``airfoil`` extra where it runs.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np


def _thickness(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("designs", type=Path, help="input .npy, float64 (n, 18)")
    p.add_argument("values", type=Path, help="output .csv, one line per design")
    p.add_argument("--model-size", default="xlarge")
    p.add_argument("--alpha", type=float, default=5.0)
    p.add_argument("--re", type=float, default=1e6)
    p.add_argument("--n-crit", type=float, default=9.0)
    p.add_argument("--min-thickness", type=_thickness, default=0.12)
    p.add_argument("--standardized", action="store_true", help="designs are standardized z")
    args = p.parse_args(argv)

    from oracles.airfoil import NeuralFoilOracle

    standardization = None
    if args.standardized:
        from sqdf_bbo.diffusion.priors import load_standardization

        standardization = load_standardization("airfoil")
    oracle = NeuralFoilOracle(
        model_size=args.model_size,
        alpha=args.alpha,
        Re=args.re,
        n_crit=args.n_crit,
        min_thickness=args.min_thickness,
        standardization=standardization,
    )
    x = np.load(args.designs, allow_pickle=False)
    res = oracle.analyze(x.reshape(x.shape[0], -1))
    lines = []
    for value, reason in zip(res["LD"], res["failure"]):
        if reason or not math.isfinite(value):
            text = str(reason or "non-finite value").replace("\n", " ")
            lines.append(f"nan,{text}")
        else:
            lines.append(repr(float(value)))
    args.values.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
