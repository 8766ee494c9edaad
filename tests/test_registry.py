"""The shipped priors and classifier: offline loading, shapes, sizes, and the classifier's accuracy."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch

import sqdf_bbo
from sqdf_bbo.classifier import CLASSIFIER_DIR, load_digits_classifier
from sqdf_bbo.data import digits_split
from sqdf_bbo.diffusion.priors import EMBEDDED_DIR, available_priors, load_prior, prior_path

PACKAGE_DIR = Path(sqdf_bbo.__file__).resolve().parent


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any socket connection attempt fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_available_priors() -> None:
    names = [
        "airfoil",
        "digits",
        "digits-latent",
        "ehrlich-v32-l128-c4-k4-q4",
        "ehrlich-v32-l32-c4-k4-q4",
        "rings",
    ]
    assert available_priors() == names
    assert sqdf_bbo.available_priors() == names


def test_unknown_prior_lists_accepted_names() -> None:
    with pytest.raises(
        ValueError,
        match=r"unknown prior 'mnist'.*digits, digits-latent, ehrlich-v32-l128-c4-k4-q4, ehrlich-v32-l32-c4-k4-q4, rings",
    ):
        load_prior("mnist")


def test_weights_live_inside_the_package_and_are_small() -> None:
    assert EMBEDDED_DIR.is_relative_to(PACKAGE_DIR)
    files = [f for f in EMBEDDED_DIR.rglob("*") if f.is_file()]
    for name in available_priors():
        assert prior_path(name).is_relative_to(PACKAGE_DIR)
        assert any(f.is_relative_to(prior_path(name)) and f.suffix == ".safetensors" for f in files)
    assert (CLASSIFIER_DIR / "model.safetensors").is_file()
    assert sum(f.stat().st_size for f in files) < 10 * 2**20
    assert not any(f.suffix in (".bin", ".pt", ".pkl", ".ckpt") for f in files)  # no pickles


@pytest.mark.parametrize(
    ("name", "shape", "value_range"),
    [("digits", (1, 8, 8), (-1.0, 1.0)), ("rings", (2,), None)],
)
def test_load_offline_and_sample(
    no_network: None, name: str, shape: tuple[int, ...], value_range: tuple | None
) -> None:
    prior = load_prior(name)
    assert prior.name == name and prior.shape == shape and prior.value_range == value_range
    assert prior.consistency is not None
    assert not any(p.requires_grad for p in prior.consistency.parameters())
    assert all(p.requires_grad for p in prior.clone().denoiser.parameters())
    out = prior.sample(16, torch.Generator().manual_seed(0), return_trajectory=True)
    K = prior.num_inference_steps
    assert out.x.shape == (16, *shape) and out.trajectory.shape == (16, K + 1, *shape)
    assert torch.isfinite(out.x).all()
    again = prior.sample(16, torch.Generator().manual_seed(0)).x
    assert torch.equal(out.x, again)
    if name == "digits":
        # the prior stays (almost) inside the data range; noise would not
        assert (out.x.abs() <= 1.1).float().mean().item() > 0.98
    else:
        r = out.x.norm(dim=1)
        assert ((r - 2.0).abs() < 0.6).float().mean().item() > 0.8


def test_classifier_accuracy_and_contract(no_network: None) -> None:
    clf = load_digits_classifier()
    split = digits_split()
    with torch.no_grad():
        acc = (clf(split.x_heldout).argmax(-1) == split.y_heldout).float().mean().item()
    assert acc >= 0.9
    assert not any(p.requires_grad for p in clf.parameters()) and not clf.training
    x = split.x_heldout[:4].clone().requires_grad_(True)
    clf(x)[:, 3].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert clf.features(x).shape == (4, clf.feature_dim)
    with pytest.raises(ValueError, match=r"\(n, 1, 8, 8\)"):
        clf(torch.zeros(2, 64))


def test_module_level_features_match_the_classifier() -> None:
    from sqdf_bbo.classifier import features

    x = digits_split().x_heldout[:5]
    assert torch.equal(features(x), load_digits_classifier().features(x))


@pytest.mark.slow
def test_retraining_the_classifier_reproduces_the_shipped_weights() -> None:
    from safetensors.torch import load_file

    from sqdf_bbo.classifier import train_digits_classifier

    model, info = train_digits_classifier(progress=False)
    shipped = load_file(str(CLASSIFIER_DIR / "model.safetensors"))
    diff = max((model.state_dict()[k] - v).abs().max().item() for k, v in shipped.items())
    assert diff < 1e-3  # identical recipe; only float round-off across machines/threads
    assert info["heldout_accuracy"] >= 0.98
