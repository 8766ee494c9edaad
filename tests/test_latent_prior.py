"""The shipped class-conditional latent prior ``digits-latent``: it loads offline, decodes to
8×8 digits in [-1, 1], keeps its condition, and its recorded evidence is what it claims."""

from __future__ import annotations

import json

import torch

from sqdf_bbo.classifier import load_digits_classifier
from sqdf_bbo.diffusion.latent import LatentDecoder
from sqdf_bbo.diffusion.priors import load_prior, prior_path


def test_the_latent_prior_is_conditional_and_decodes_to_digits() -> None:
    prior = load_prior("digits-latent")
    assert prior.shape == (2, 4, 4) and prior.design_shape == (1, 8, 8)
    assert isinstance(prior.decoder, LatentDecoder) and prior.conditioning.kind == "labels"
    assert prior.conditioning.num_classes == 10 and prior.conditioning.null_label == 10
    labels = [0, 1, 2, 3] * 8
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        x = prior.to_design(prior.sample(32, gen, cond=prior.encode_conditions(labels)).x)
        pred = load_digits_classifier()(x).argmax(1)
    assert x.shape == (32, 1, 8, 8) and float(x.abs().max()) <= 1.0
    accuracy = float((pred == torch.tensor(labels)).float().mean())
    assert accuracy >= 0.6, f"samples do not keep their class (accuracy {accuracy:.2f})"


def test_the_recorded_evidence_covers_every_class() -> None:
    evidence = json.loads((prior_path("digits-latent") / "evidence.json").read_text())
    assert [r["class"] for r in evidence["per_class"]] == list(range(10))
    assert evidence["n_per_class"] >= 100
    assert 0.0 <= evidence["mean"]["accuracy"] <= 1.0
