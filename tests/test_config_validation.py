"""Every frozen config checks its field types at construction (sqdf_bbo.config, issue 8 D4/D13)."""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import pytest

from benchmarks.suites import METHODS, Suite
from benchmarks.train_priors import DenoiserTrainConfig, PriorRecipe
from sqdf_bbo.classifier import ClassifierTrainConfig
from sqdf_bbo.config import ALLOW_NONFINITE, ConfigError, check_fields, parse_field
from sqdf_bbo.finetuning.sqdf import SQDFConfig
from sqdf_bbo.optimizers import GPBOConfig, SEIKOConfig, SEIKOTrainConfig
from sqdf_bbo.optimizers.sqdf import SQDFOptimizerConfig
from sqdf_bbo.surrogates import EnsembleConfig, GPConfig, UCBConfig


def _suite(**kw: Any) -> Suite:
    base: dict[str, Any] = {
        "name": "t",
        "tasks": ("rings",),
        "methods": (METHODS[0],),
        "seeds": (0,),
        "budgets": (4,),
    }
    return Suite(**{**base, **kw})


def _recipe(**kw: Any) -> PriorRecipe:
    return PriorRecipe(**{"name": "t", "train": DenoiserTrainConfig(), **kw})


FACTORIES: dict[str, Callable[..., Any]] = {
    "SQDFConfig": SQDFConfig,
    "SQDFOptimizerConfig": SQDFOptimizerConfig,
    "SEIKOConfig": SEIKOConfig,
    "SEIKOTrainConfig": SEIKOTrainConfig,
    "GPBOConfig": GPBOConfig,
    "EnsembleConfig": EnsembleConfig,
    "GPConfig": GPConfig,
    "UCBConfig": UCBConfig,
    "ClassifierTrainConfig": ClassifierTrainConfig,
    "DenoiserTrainConfig": DenoiserTrainConfig,
    "PriorRecipe": _recipe,
    "Suite": _suite,
}
CLASSES = {**FACTORIES, "PriorRecipe": PriorRecipe, "Suite": Suite}


def _scalar_fields(cls: type) -> list[tuple[str, type]]:
    """(name, base type) of the int/float/bool/str fields, Optional ones included."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        base = args[0] if typing.get_origin(tp) is not None and len(args) == 1 else tp
        if base in (int, float, bool, str):
            out.append((f.name, base))
    return out


def _bad_values(base: type) -> list[Any]:
    return {
        int: [2.5, True, "3", math.inf],
        float: [math.inf, math.nan, True, "0.1"],
        bool: ["False", 0, 1.0],
        str: [3, b"x"],
    }[base]


CASES = [
    pytest.param(key, name, bad, id=f"{key}.{name}={bad!r}")
    for key, cls in CLASSES.items()
    for name, base in _scalar_fields(cls)
    for bad in _bad_values(base)
]


def test_every_config_has_scalar_fields_to_check() -> None:
    for key, cls in CLASSES.items():
        assert _scalar_fields(cls), key


@pytest.mark.parametrize(("key", "name", "bad"), CASES)
def test_wrong_type_is_rejected_naming_the_field(key: str, name: str, bad: Any) -> None:
    with pytest.raises(ConfigError, match=name):
        FACTORIES[key](**{name: bad})


def test_config_error_is_both_value_and_type_error() -> None:
    assert issubclass(ConfigError, ValueError) and issubclass(ConfigError, TypeError)


def test_probed_defects_d4_d13() -> None:
    with pytest.raises(ValueError, match="clear_buffer_each_round"):
        SQDFOptimizerConfig(clear_buffer_each_round="False")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lr: expected a finite float"):
        SQDFOptimizerConfig(lr=math.inf)
    with pytest.raises(ValueError, match="lr"):
        SQDFConfig(lr=math.inf)
    with pytest.raises(ValueError, match="steps_per_round: expected an integer, got 2.5"):
        SQDFOptimizerConfig(steps_per_round=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_heads"):
        EnsembleConfig(n_heads=True)


def test_several_problems_are_reported_together() -> None:
    with pytest.raises(ConfigError, match=r"gamma.*steps_per_round.*progress"):
        SQDFOptimizerConfig(gamma="x", steps_per_round=1.5, progress=None)  # type: ignore[arg-type]


def test_values_are_normalized_to_the_declared_types() -> None:
    c = SQDFOptimizerConfig(steps_per_round=3.0, gamma=1, lr=np.float64(0.5), ddim_m=np.int64(2))  # type: ignore[arg-type]
    assert c.steps_per_round == 3 and type(c.steps_per_round) is int
    assert type(c.gamma) is float and type(c.lr) is float and type(c.ddim_m) is int
    assert SQDFOptimizerConfig(progress=np.bool_(False)).progress is False
    s = SQDFConfig(lora_targets=["a", "b"])  # type: ignore[arg-type]
    assert s.lora_targets == ("a", "b")
    assert _suite(seeds=[0, 1]).seeds == (0, 1)
    assert SQDFOptimizerConfig(alpha=None).alpha is None
    assert (
        SQDFOptimizerConfig().to_dict()
        == SQDFOptimizerConfig.from_dict(SQDFOptimizerConfig().to_dict()).to_dict()
    )


@dataclasses.dataclass(frozen=True)
class _Toy:
    mode: Literal["a", "b"] = "a"
    limit: float = dataclasses.field(default=math.inf, metadata={ALLOW_NONFINITE: True})
    scale: float = 1.0
    count: int | None = None
    names: tuple[str, ...] = ()
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        check_fields(self)


def test_helper_on_literal_optional_nonfinite_tuple_and_mapping() -> None:
    assert _Toy().limit == math.inf and _Toy(limit=math.nan).limit != 0
    with pytest.raises(ConfigError, match="scale: expected a finite float"):
        _Toy(scale=-math.inf)
    with pytest.raises(ConfigError, match=r"mode: expected one of 'a', 'b'"):
        _Toy(mode="c")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="count"):
        _Toy(count=1.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="names"):
        _Toy(names=("a", 1))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="names"):
        _Toy(names="ab")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="options"):
        _Toy(options=[1])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="options: expected string keys"):
        _Toy(options={1: 2})  # type: ignore[dict-item]


# ---------------------------------------------------------------------------- parse_field
@pytest.mark.parametrize(
    ("text", "value"),
    [("False", False), ("true", True), ("YES", True), ("no", False), ("1", True), ("0", False)],
)
def test_parse_bool(text: str, value: bool) -> None:
    assert parse_field(SQDFOptimizerConfig, "clear_buffer_each_round", text) is value


def test_parse_numbers_optional_and_json() -> None:
    P = SQDFOptimizerConfig
    assert parse_field(P, "steps_per_round", "3") == 3
    assert parse_field(P, "steps_per_round", "3.0") == 3
    assert parse_field(P, "lr", "1e-3") == 1e-3
    assert parse_field(P, "lr", "none") is None and parse_field(P, "lr", "null") is None
    assert parse_field(P, "surrogate", "ucb") == "ucb"
    assert parse_field(P, "surrogate_options", '{"n_heads": 2}') == {"n_heads": 2}
    assert parse_field(SQDFConfig, "lora_targets", "a, b") == ("a", "b")
    assert parse_field(SQDFConfig, "lora_targets", '["a"]') == ("a",)
    assert parse_field(_Toy, "limit", "inf") == math.inf
    assert parse_field(_Toy, "mode", "b") == "b"


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("clear_buffer_each_round", "maybe", "expected a bool"),
        ("steps_per_round", "2.5", "expected an integer, got 2.5"),
        ("steps_per_round", "many", "expected an integer"),
        ("lr", "inf", "finite"),
        ("gamma", "nan", "finite"),
        ("gamma", "none", "expected a number"),
        ("surrogate_options", "[1]", "expected a mapping"),
        ("surrogate_options", "{bad", "expected JSON"),
    ],
)
def test_parse_rejects_bad_text(name: str, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_field(SQDFOptimizerConfig, name, text)


def test_parse_unknown_key_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown SQDFOptimizerConfig field 'stepz'.*gamma"):
        parse_field(SQDFOptimizerConfig, "stepz", "3")
    with pytest.raises(ConfigError, match=r"expected one of 'a', 'b'"):
        parse_field(_Toy, "mode", "c")
