"""A small frozen 8×8-digits classifier: the scorer behind the digits oracles and naturalness metrics.

Architecture (``DigitsClassifier``), input ``(n, 1, 8, 8)`` in [-1, 1]:

    conv 3×3 (1→16) · SiLU · conv 3×3 (16→32) · SiLU · avg-pool 2 → (n, 32, 4, 4)
    flatten (512) · linear → 64 · SiLU      = features(x), shape (n, 64)
    linear → 10                             = logits, shape (n, 10)

It is trained on the training part of :func:`sqdf_bbo.data.digits_split` only
(:func:`train_digits_classifier`, deterministic given its seed) and shipped in
``sqdf_bbo/embedded/classifier/`` (safetensors + JSON config).
:func:`load_digits_classifier` returns it frozen (``requires_grad=False``, eval
mode) but differentiable with respect to its input, so rewards built on it can
be back-propagated into designs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from sqdf_bbo.config import Range, check_fields
from sqdf_bbo.data import digits_split
from sqdf_bbo.progress import progress_bar

__all__ = [
    "DigitsClassifier",
    "ClassifierTrainConfig",
    "train_digits_classifier",
    "load_digits_classifier",
    "save_digits_classifier",
    "features",
    "CLASSIFIER_DIR",
]

CLASSIFIER_DIR = Path(__file__).resolve().parent / "embedded" / "classifier"
_WEIGHTS = "model.safetensors"
_CONFIG = "config.json"


class DigitsClassifier(nn.Module):
    """Tiny CNN: ``(n, 1, 8, 8)`` in [-1, 1] → logits ``(n, 10)``; ``features`` → ``(n, feature_dim)``.

    Args:
        channels: widths of the two conv layers.
        feature_dim: width F of the penultimate layer.
    """

    def __init__(self, channels: tuple[int, int] = (16, 32), feature_dim: int = 64) -> None:
        super().__init__()
        c1, c2 = (int(c) for c in channels)
        if c1 < 1 or c2 < 1 or int(feature_dim) < 1:
            raise ValueError(
                f"channels and feature_dim must be positive, got {channels}, {feature_dim}"
            )
        self.config: dict[str, Any] = {"channels": [c1, c2], "feature_dim": int(feature_dim)}
        self.body = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(c1, c2, 3, padding=1),
            nn.SiLU(),
            nn.AvgPool2d(2),
            nn.Flatten(),
            nn.Linear(c2 * 16, int(feature_dim)),
            nn.SiLU(),
        )
        self.head = nn.Linear(int(feature_dim), 10)

    @property
    def feature_dim(self) -> int:
        return int(self.config["feature_dim"])

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != (1, 8, 8):
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"digits classifier input must have shape (n, 1, 8, 8), got {got}")
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features, x: ``(n, 1, 8, 8)`` → ``(n, F)``."""
        return self.body(self._check(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, x: ``(n, 1, 8, 8)`` → ``(n, 10)``."""
        return self.head(self.features(x))


@dataclass(frozen=True)
class ClassifierTrainConfig:
    """Training settings of :func:`train_digits_classifier`.

    Attributes:
        epochs: passes over the 1437 training images.
        batch_size: images per step.
        lr: AdamW learning rate (cosine-decayed to 0).
        weight_decay: AdamW weight decay.
        label_smoothing: cross-entropy label smoothing (tempers over-confidence).
        seed: seeds the initialization and the batch order.
    """

    #: The sane range of each numeric setting (checked by ``check_fields``).
    LIMITS: ClassVar[dict[str, Range]] = {
        "epochs": Range(1, 100_000),
        "batch_size": Range(1, 100_000),
        "lr": Range(0, 1, low_open=True),
        "weight_decay": Range(0, 100),
        "label_smoothing": Range(0, 1, high_open=True),
        "seed": Range(0, 2**62, high_open=True),
    }

    epochs: int = 40
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-3
    label_smoothing: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        check_fields(self)
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(
                f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}"
            )
        if not self.lr > 0 or self.weight_decay < 0:
            raise ValueError(
                f"lr must be > 0 and weight_decay >= 0, got {self.lr}, {self.weight_decay}"
            )
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must lie in [0, 1), got {self.label_smoothing}")


def train_digits_classifier(
    config: ClassifierTrainConfig | None = None, *, progress: bool = True
) -> tuple[DigitsClassifier, dict[str, float]]:
    """Train the classifier on the digits training split, deterministically.

    Returns:
        The frozen classifier and a dict with ``final_loss``, ``train_accuracy``
        and ``heldout_accuracy``.
    """
    cfg = config or ClassifierTrainConfig()
    split = digits_split()
    # 1. Seeded initialization without touching the caller's global RNG state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = DigitsClassifier()
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    n = split.x_train.shape[0]
    steps_per_epoch = (n + cfg.batch_size - 1) // cfg.batch_size
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    model.train()
    loss = torch.tensor(float("nan"))
    # 2. Mini-batch AdamW over shuffled epochs.
    for _ in progress_bar(
        range(cfg.epochs), progress=progress, desc="digits classifier", leave=False
    ):
        perm = torch.randperm(n, generator=gen)
        for s in range(0, n, cfg.batch_size):
            b = perm[s : s + cfg.batch_size]
            loss = loss_fn(model(split.x_train[b]), split.y_train[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    _freeze(model)
    with torch.no_grad():
        train_acc = (model(split.x_train).argmax(1) == split.y_train).float().mean().item()
        held_acc = (model(split.x_heldout).argmax(1) == split.y_heldout).float().mean().item()
    return model, {
        "final_loss": float(loss.item()),
        "train_accuracy": train_acc,
        "heldout_accuracy": held_acc,
    }


def _freeze(model: nn.Module) -> nn.Module:
    model.eval()
    model.requires_grad_(False)
    return model


def save_digits_classifier(model: DigitsClassifier, directory: str | Path = CLASSIFIER_DIR) -> Path:
    """Write ``model`` as ``model.safetensors`` + ``config.json`` under ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(directory / _WEIGHTS))
    (directory / _CONFIG).write_text(
        json.dumps({"class": "DigitsClassifier", **model.config}, indent=2)
    )
    return directory


def load_digits_classifier(
    device: torch.device | str = "cpu", directory: str | Path | None = None
) -> DigitsClassifier:
    """The shipped digits classifier, frozen, in eval mode, on ``device``.

    Maps ``(n, 1, 8, 8)`` in [-1, 1] to logits ``(n, 10)``; differentiable in
    its input. ``directory`` overrides the shipped weights folder.
    """
    directory = CLASSIFIER_DIR if directory is None else Path(directory)
    cfg_file, weights = directory / _CONFIG, directory / _WEIGHTS
    if not cfg_file.is_file() or not weights.is_file():
        raise FileNotFoundError(
            f"no digits classifier in {directory}; retrain it with "
            "`python -m benchmarks.train_priors --only classifier`"
        )
    cfg = json.loads(cfg_file.read_text())
    model = DigitsClassifier(tuple(cfg["channels"]), cfg["feature_dim"])
    model.load_state_dict(load_file(str(weights)))
    return _freeze(model.to(device))


_SHIPPED: dict[str, DigitsClassifier] = {}


def features(x: torch.Tensor) -> torch.Tensor:
    """Penultimate features of the shipped classifier, x: ``(n, 1, 8, 8)`` → ``(n, 64)``.

    Loads the shipped classifier once per device (then reuses it); differentiable in ``x``.
    """
    key = str(x.device)
    if key not in _SHIPPED:
        _SHIPPED[key] = load_digits_classifier(x.device)
    return _SHIPPED[key].features(x)
