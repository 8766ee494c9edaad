"""Progress bars: drawn on a terminal only; no carriage returns in logs; progress=False is silent."""

from __future__ import annotations

import io

import pytest
import torch

from oracles.base import DifferentiableOracle
from sqdf_bbo.progress import progress_bar


class _Terminal(io.StringIO):
    """An in-memory stream that claims to be a terminal."""

    def isatty(self) -> bool:
        return True


class _SumOracle(DifferentiableOracle):
    """Sum of the coordinates of a ``(2,)`` design."""

    shape = (2,)

    def evaluate_true(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(-1)


@pytest.mark.parametrize("progress", [True, False])
def test_no_bar_when_stderr_is_not_a_terminal(
    capfd: pytest.CaptureFixture[str], progress: bool
) -> None:
    total = 0
    for i in progress_bar(range(50), progress=progress, desc="work", mininterval=0):
        total += i
    bar = progress_bar(total=3, progress=progress, desc="manual", mininterval=0)
    bar.update(3)
    bar.set_postfix(loss=1.0)
    bar.close()
    out, err = capfd.readouterr()
    assert total == sum(range(50))
    assert "\r" not in err and err == "" and out == ""


def test_bar_is_drawn_on_a_terminal() -> None:
    stream = _Terminal()
    for _ in progress_bar(range(5), progress=True, desc="work", file=stream, mininterval=0):
        pass
    assert "work" in stream.getvalue() and "\r" in stream.getvalue()


def test_progress_false_never_draws_even_on_a_terminal() -> None:
    stream = _Terminal()
    for _ in progress_bar(range(5), progress=False, desc="work", file=stream):
        pass
    assert stream.getvalue() == ""


def test_disable_is_not_accepted() -> None:
    with pytest.raises(TypeError, match="disable"):
        progress_bar(range(3), progress=True, disable=False)


def test_oracle_progress_writes_nothing_to_a_non_terminal(
    capfd: pytest.CaptureFixture[str],
) -> None:
    oracle = _SumOracle(progress=True, chunk_size=1)
    y = oracle(torch.ones(4, 2))
    _, err = capfd.readouterr()
    assert torch.equal(y, torch.full((4,), 2.0, dtype=torch.float64))
    assert "\r" not in err and "oracle" not in err
