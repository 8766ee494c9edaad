"""The public API: every exported name resolves, lazily."""

from __future__ import annotations

import subprocess
import sys

import sqdf_bbo


def test_every_exported_name_resolves() -> None:
    for name in sqdf_bbo.__all__:
        assert getattr(sqdf_bbo, name) is not None, name


def test_import_is_lazy() -> None:
    code = "import sys, sqdf_bbo; print('diffusers' in sys.modules, 'botorch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
