"""``run()`` keeps an evaluated batch when one value is unusable (issue 16, item 2): an
out-of-range or non-finite value from the oracle becomes that point's design failure with a
reason, and the other values are told. A user's direct ``tell`` of such a value still raises
(a mistake to correct), and output that is not n numbers leaves the batch pending."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

from oracles import CallableOracle, CommandOracle
from sqdf_bbo.optimizers.base import Optimizer
from tests.test_optimizer_contract import GaussianSearch

PROGRAM = """
import sys
with open(sys.argv[2], "w") as fh:
    fh.write("1e39\\n1\\n2\\n3\\n")
"""


def check_one_bad_value(opt: Optimizer, bad: int, fragment: str) -> None:
    h = opt.history.set_index("id")
    assert opt.pending == []
    assert h["state"].tolist() == ["failed" if i == bad else "complete" for i in range(4)]
    assert fragment in h.loc[bad, "reason"]
    assert not h["transient"].any(), "an unusable value is a design failure"


def test_a_command_oracle_writing_1e39_fails_that_point_only(tmp_path: Path) -> None:
    script = tmp_path / "sim.py"
    script.write_text(PROGRAM)
    sim = CommandOracle([sys.executable, str(script)], shape=(2,))
    opt = GaussianSearch(batch_size=4, study=tmp_path / "s")
    opt.run(sim, budget=4, progress=False)
    check_one_bad_value(opt, 0, "the oracle returned 1e+39, beyond ±1.84e+19")
    assert opt.history["value"].tolist()[1:] == [1.0, 2.0, 3.0]
    opt.close()
    back = GaussianSearch.load(tmp_path / "s", attach=False)
    check_one_bad_value(back, 0, "beyond")


@pytest.mark.parametrize(
    "bad, fragment",
    [(-1e30, "the oracle returned -1e+30, beyond"), (math.inf, "the oracle returned inf")],
)
def test_a_plain_callable_with_one_unusable_value(bad: float, fragment: str) -> None:
    opt = GaussianSearch(batch_size=4)
    opt.run(
        lambda x: torch.tensor([1.0, 2.0, bad, 3.0], dtype=torch.float64), budget=4, progress=False
    )
    check_one_bad_value(opt, 2, fragment)


def test_an_oracle_reason_is_kept_for_its_non_finite_value() -> None:
    oracle = CallableOracle(lambda x: math.inf if float(x[0]) > 0 else 1.0, (2,))
    opt = GaussianSearch(batch_size=8, seed=2)
    opt.run(oracle, budget=8, progress=False)
    h = opt.history
    failed = h[h["state"] == "failed"]
    assert len(failed) >= 1
    assert (failed["reason"] == "non-finite value inf").all()


def test_a_direct_tell_of_an_out_of_range_value_still_raises() -> None:
    opt = GaussianSearch(batch_size=2)
    b = opt.ask()
    with pytest.raises(ValueError, match="too large for the model"):
        opt.tell(b.ids, [1e39, 1.0])
    assert opt.counts() == {"pending": 2, "complete": 0, "failed": 0}


def test_output_that_is_not_n_numbers_leaves_the_batch_pending() -> None:
    opt = GaussianSearch(batch_size=3)
    with pytest.raises(ValueError, match="expected 3 values"):
        opt.run(lambda x: torch.ones(2), budget=3, progress=False)
    assert len(opt.pending) == 3
