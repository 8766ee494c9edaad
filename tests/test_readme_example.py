"""The README's ask/tell example is executed as written (in a temporary working directory)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = "<!-- readme-example: executed by tests/test_readme_example.py -->"


def readme_example() -> str:
    text = README.read_text()
    assert MARKER in text, "the README lost its executed ask/tell example"
    block = re.search(r"```python\n(.*?)```", text.split(MARKER, 1)[1], re.S)
    assert block is not None
    return block.group(1)


def test_readme_example_runs(tmp_path, monkeypatch, capsys) -> None:
    code = readme_example()
    assert len(code.strip().splitlines()) <= 12
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, str(README), "exec"), scope)
    opt = scope["opt"]
    hist = opt.history
    assert isinstance(hist, pd.DataFrame) and len(hist) == 96
    assert set(hist["round"]) == {0, 1, 2}
    assert (hist["state"] == "complete").all()
    assert opt.round == 2  # reloaded study: two fitted rounds, no pending points
    assert (tmp_path / "runs" / "readme-study").is_dir()
    assert "round" in capsys.readouterr().out
