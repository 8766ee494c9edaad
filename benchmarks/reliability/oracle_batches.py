"""Oracle batches with one bad value (issue 16, item 2): ``opt.run(oracle, budget=4)`` on a
study whose oracle returns one value the model cannot take (beyond ±1.8e19, ±inf, NaN,
1e400 read from a file) must tell the other three values bit-exactly, record the bad one as a
design failure with a reason and leave nothing pending; output that is not 4 numbers must
raise and leave the batch pending."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.reliability.common import Probe, Sizes, new_sqdf, one_line, read_study, same_value
from oracles import CommandOracle
from sqdf_bbo.optimizers.base import Optimizer

GOOD = (0.125, -2.5, 1e-300)  # the three good values of every batch, told around the bad one


@dataclass(frozen=True)
class BatchCase:
    """An oracle (``make(folder)``) for a batch of 4 and what must be stored: per point the
    told value, or ``None`` for a failed point with a reason; ``expected=None``: the output
    is unusable and the batch must stay pending (``run`` raises)."""

    name: str
    make: Callable[[Path], Callable[[torch.Tensor], torch.Tensor]]
    expected: tuple[float | None, ...] | None


def values_with(bad: float, at: int) -> list[float]:
    """The good values with ``bad`` inserted at position ``at``."""
    out = list(GOOD)
    out.insert(at, bad)
    return out


def stored_as(at: int) -> tuple[float | None, ...]:
    """What must be stored when position ``at`` is bad: the good values around a failure."""
    out: list[float | None] = list(GOOD)
    out.insert(at, None)
    return tuple(out)


def constant(values: list[float]) -> Callable[[Path], Callable[[torch.Tensor], torch.Tensor]]:
    """A plain callable returning ``values`` for any batch of 4."""
    return lambda folder: lambda x: torch.tensor(values, dtype=torch.float64)


def command_writing(lines: list[str]) -> Callable[[Path], CommandOracle]:
    """A CommandOracle whose program writes ``lines`` as its values.csv."""

    def make(folder: Path) -> CommandOracle:
        script = folder / "sim.py"
        text = "\n".join(lines) + "\n"
        script.write_text(f"import sys\nopen(sys.argv[2], 'w').write({text!r})\n")
        return CommandOracle([sys.executable, str(script)], shape=(2,))

    return make


def batch_cases() -> list[BatchCase]:
    """Bad values at every position, from a plain callable and from a program."""
    good = [repr(v) for v in GOOD]
    return [
        BatchCase("CommandOracle writes 1e39 first (the issue's case)",
                  command_writing(["1e39", *good]), stored_as(0)),
        BatchCase("CommandOracle writes 1e400 (inf once read)",
                  command_writing([*good[:2], "1e400", good[2]]), stored_as(2)),
        BatchCase("CommandOracle writes -1e20 last", command_writing([*good, "-1e20"]), stored_as(3)),
        BatchCase("CommandOracle writes 3 lines for 4 designs",
                  command_writing(good), (None,) * 4),
        BatchCase("callable returns 1e39", constant(values_with(1e39, 1)), stored_as(1)),
        BatchCase("callable returns -inf", constant(values_with(-math.inf, 0)), stored_as(0)),
        BatchCase("callable returns NaN", constant(values_with(math.nan, 3)), stored_as(3)),
        BatchCase("callable returns 2e19 (just beyond the limit)",
                  constant(values_with(2e19, 2)), stored_as(2)),
        BatchCase("callable returns 3 values for 4 designs", constant(list(GOOD)), None),
    ]  # fmt: skip


BATCH_CASES = tuple(c.name for c in batch_cases())


def reasons_of(study: Path) -> dict[int, str | None]:
    """The failure reasons of a study's points, by id."""
    h = Optimizer.load(study, attach=False).history
    return dict(zip((int(i) for i in h["id"]), h["reason"].tolist()))


def batch_probe(case: BatchCase, folder: Path) -> Probe:
    """``run(oracle, budget=4)`` on a fresh study; judge what was told and stored."""
    folder.mkdir(parents=True)
    opt = new_sqdf(folder / "s")
    outcome = "run returned"
    try:
        opt.run(case.make(folder), budget=4, progress=False)
    except ValueError as err:
        outcome = f"raised ValueError ({one_line(str(err), 50)})"
    finally:
        opt.close()
    stored, reasons = read_study(folder / "s"), reasons_of(folder / "s")
    pending = sum(s == "pending" for s in stored.states.values())
    if case.expected is None:  # unusable output: the batch stays pending
        ok = outcome.startswith("raised") and pending == 4
        return Probe("oracle batches", case.name, f"{outcome}; {pending} pending", ok=ok)
    problems: list[str] = []
    lost = 0
    for i, want in enumerate(case.expected):
        state = stored.states.get(i)
        if want is None and (state != "failed" or not reasons.get(i)):
            problems.append(f"id {i}: {state}, reason {reasons.get(i)!r}")
        elif want is not None and (state != "complete" or not same_value(stored.values[i], want)):
            lost += 1
            problems.append(f"id {i}: {state} {stored.values.get(i)!r}, told {want!r}")
    failed = sum(s == "failed" for s in stored.states.values())
    return Probe(
        "oracle batches",
        case.name,
        f"{outcome}: {4 - failed - pending} told, {failed} failed with a reason",
        checked=sum(v is not None for v in case.expected),
        lost=lost,
        ok=outcome == "run returned" and pending == 0 and not problems,
        detail="; ".join(problems[:3]),
    )


def oracle_batch_probes(
    work: Path, sizes: Sizes, seed: int, log: Callable[[str], None]
) -> list[Probe]:
    """Every batch case (or those named in ``sizes.batch_cases``)."""
    cases = [c for c in batch_cases() if sizes.batch_cases is None or c.name in sizes.batch_cases]
    probes = [batch_probe(c, work / f"case-{k:02d}") for k, c in enumerate(cases)]
    log(f"  {len(probes)} oracle-batch probes")
    return probes
