"""The paper's aesthetic experiment as a suite: without the weights it stops with one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from benchmarks.aesthetic import AestheticScorer, AestheticSuite, MissingWeights, check_paths, main


def test_without_the_weights_the_suite_fails_with_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--pipeline", str(tmp_path / "sd15"), "--clip", str(tmp_path / "clip"),
            "--head", str(tmp_path / "head.safetensors"), "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Stable Diffusion pipeline folder" in err and "sd15" in err
    assert not (tmp_path / "out").exists()
    (tmp_path / "sd15").mkdir()
    (tmp_path / "clip").mkdir()
    with pytest.raises(MissingWeights, match="aesthetic head weights"):
        check_paths(AestheticSuite(tmp_path / "sd15", tmp_path / "clip", tmp_path / "head.pt"))


def test_the_paper_round_sizes_are_the_default() -> None:
    suite = AestheticSuite(Path("a"), Path("b"), Path("c"))
    assert suite.budgets == (1024, 2048, 4096, 8192) and suite.noise_std == 0.1
    assert suite.sqdf["finetune"]["kl_weight"] == 1.0


class _FakeClip(nn.Module):
    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return pixel_values.mean((2, 3)).repeat(1, 256)  # (n, 768)


def test_the_aesthetic_head_reads_the_laion_layer_names() -> None:
    torch.manual_seed(0)
    dims = (768, 1024, 128, 64, 16, 1)
    state = {}
    for idx, (a, b) in zip((0, 2, 4, 6, 7), zip(dims[:-1], dims[1:])):
        state[f"layers.{idx}.weight"] = torch.randn(b, a) * 0.01
        state[f"layers.{idx}.bias"] = torch.randn(b) * 0.01
    scorer = AestheticScorer(_FakeClip(), state)
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    e = scorer.embed(images)
    want = e
    for idx in (0, 2, 4, 6, 7):
        want = want @ state[f"layers.{idx}.weight"].T + state[f"layers.{idx}.bias"]
    torch.testing.assert_close(scorer(images), want.squeeze(-1))
