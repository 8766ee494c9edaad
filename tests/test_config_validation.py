"""Every frozen config checks its field types at construction (sqdf_bbo.config, issue 8 D4/D13)."""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import pytest

from benchmarks.suites import Suite
from benchmarks.train_priors import DenoiserTrainConfig, PriorRecipe
from sqdf_bbo.classifier import ClassifierTrainConfig
from sqdf_bbo.config import (
    ALLOW_NONFINITE,
    ConfigError,
    check_fields,
    config_from_dict,
    config_to_dict,
    parse_field,
    setting_key,
)
from sqdf_bbo.finetuning.configs import SEIKOTrainConfig
from sqdf_bbo.finetuning.sqdf import SQDFConfig
from sqdf_bbo.migration import migrate
from sqdf_bbo.optimizers import GPBOConfig, SEIKOConfig
from sqdf_bbo.optimizers.sqdf import SQDFOptimizerConfig
from sqdf_bbo.surrogates import EnsembleConfig, GPConfig, UCBConfig


def _suite(**kw: Any) -> Suite:
    base: dict[str, Any] = {
        "name": "t",
        "tasks": ("rings",),
        "methods": ("prior",),
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
        SQDFOptimizerConfig(finetune={"clear_buffer_each_round": "False"})
    with pytest.raises(ValueError, match="lr: expected a finite float"):
        SQDFOptimizerConfig(finetune={"lr": math.inf})
    with pytest.raises(ValueError, match="lr"):
        SQDFConfig(lr=math.inf)
    with pytest.raises(ValueError, match="steps: expected an integer, got 2.5"):
        SQDFOptimizerConfig(finetune={"steps": 2.5})
    with pytest.raises(ValueError, match="steps: expected an integer, got 2.5"):
        SQDFOptimizerConfig.from_dict(migrate(SQDFOptimizerConfig, {"steps_per_round": 2.5}))
    with pytest.raises(ValueError, match="n_heads"):
        EnsembleConfig(n_heads=True)


def test_several_problems_are_reported_together() -> None:
    with pytest.raises(ConfigError, match=r"gamma.*steps.*train"):
        SQDFConfig(gamma="x", steps=1.5, train=None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"surrogate.*progress"):
        SQDFOptimizerConfig(surrogate=1, progress=None)  # type: ignore[arg-type]


def test_values_are_normalized_to_the_declared_types() -> None:
    f = SQDFOptimizerConfig(
        finetune={"steps": 3.0, "gamma": 1, "lr": np.float64(0.5), "ddim_m": np.int64(2)}
    ).finetune
    assert f.steps == 3 and type(f.steps) is int
    assert type(f.gamma) is float and type(f.lr) is float and type(f.ddim_m) is int
    assert SQDFOptimizerConfig(progress=np.bool_(False)).progress is False
    s = SQDFConfig(lora_targets=["a", "b"])  # type: ignore[arg-type]
    assert s.lora_targets == ("a", "b")
    assert _suite(seeds=[0, 1]).seeds == (0, 1)
    assert SQDFOptimizerConfig(finetune={"kl_weight": 1}).finetune.kl_weight == 1.0
    assert (
        SQDFOptimizerConfig().to_dict()
        == SQDFOptimizerConfig.from_dict(SQDFOptimizerConfig().to_dict()).to_dict()
    )


# ---------------------------------------------------------------------------- (de)serialization
V0_1_SQDF = {  # the optimizer config stored by v0.1 (tests/data/study_v0_1): flat names
    "alpha_official": 1.0, "alpha": None, "gamma": 0.9, "eta": 1.0, "num_inference_steps": None,
    "x0_method": "auto", "ddim_m": 1, "steps_per_round": 2, "finetune_batch_size": 8,
    "lr": None, "grad_clip": 1.0, "onpolicy_fraction": 0.5, "rollouts_per_step": 2,
    "buffer_capacity": 1024, "buffer_method": "reward+gamma", "clear_buffer_each_round": True,
    "train": "full", "lora_rank": 4, "surrogate": "ensemble",
    "surrogate_options": {"steps": 10, "n_heads": 2}, "standardize_reward": True,
    "clip_designs": True, "progress": False,
}  # fmt: skip


def test_old_flat_names_migrate_into_the_nested_config() -> None:
    with pytest.deprecated_call():
        moved = migrate(SQDFOptimizerConfig, V0_1_SQDF, dim=2)
    assert moved["finetune.steps"] == 2 and moved["finetune.transitions_per_step"] == 8
    assert moved["finetune.kl_weight"] == 1.0 and moved["surrogate"] == "ensemble"
    assert "finetune.alpha" not in moved and "finetune.alpha_official" not in moved
    cfg = SQDFOptimizerConfig.from_dict(moved)
    f = cfg.finetune
    assert (f.steps, f.transitions_per_step, f.onpolicy_fraction) == (2, 8, 0.5)
    assert (f.kl_weight, f.eta, f.x0_method) == (1.0, 1.0, "auto")
    assert f.buffer_priority == "shift"  # absent in v0.1: today's default
    assert cfg.surrogate_options == {"steps": 10, "n_heads": 2} and cfg.progress is False
    # what today's code writes loads back to the same config
    assert SQDFOptimizerConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.to_dict()["finetune"]["transitions_per_step"] == 8
    with pytest.raises(ConfigError, match="old name of 'finetune.steps'"):
        migrate(SQDFOptimizerConfig, {"steps_per_round": 2, "finetune.steps": 3})
    with pytest.raises(ConfigError, match="unknown SQDFOptimizerConfig field 'stepz'"):
        SQDFOptimizerConfig.from_dict({"stepz": 2})
    with pytest.raises(ConfigError, match="unknown SQDFConfig field 'stepz'"):
        SQDFOptimizerConfig.from_dict({"finetune.stepz": 2})


def test_python_code_refuses_old_names_and_names_the_new_key() -> None:
    with pytest.raises(ConfigError, match="'steps_per_round' was renamed to 'finetune.steps'"):
        SQDFOptimizerConfig.from_dict({"steps_per_round": 2})
    with pytest.raises(ConfigError, match="'alpha_official' was renamed to 'kl_weight'"):
        SQDFOptimizerConfig(finetune={"alpha_official": 2.0})
    with pytest.raises(ConfigError, match="'batch_size' was renamed to 'chains_per_step'"):
        SEIKOConfig(finetune={"batch_size": 4})
    with pytest.raises(ConfigError, match=r"'alpha' was replaced by kl_weight .* 2 / D"):
        SQDFOptimizerConfig(finetune={"alpha": 0.1})


def test_nested_mapping_changes_only_the_named_settings_of_the_default() -> None:
    default = SQDFOptimizerConfig().finetune
    assert (default.kl_weight, default.eta, default.x0_method) == (2.0, 1.0, "auto")
    cfg = SQDFOptimizerConfig(finetune={"steps": 3})
    assert cfg.finetune == dataclasses.replace(default, steps=3)
    assert SQDFOptimizerConfig.from_dict({"finetune": {"steps": 3}}) == cfg
    assert SQDFOptimizerConfig.from_dict({"finetune.steps": 3}) == cfg
    # one default per setting: a mapping and an instance with the same settings agree
    assert SQDFOptimizerConfig(finetune=SQDFConfig(steps=3)) == cfg
    assert default == SQDFConfig()
    plain = config_to_dict(SQDFConfig(lora_targets=("a",)))
    assert plain["lora_targets"] == ["a"] and config_from_dict(SQDFConfig, plain).lora_targets == (
        "a",
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
    assert parse_field(SQDFConfig, "clear_buffer_each_round", text) is value


def test_parse_numbers_optional_and_json() -> None:
    P = SQDFOptimizerConfig
    assert parse_field(P, "finetune.steps", "3") == 3
    assert parse_field(P, "finetune.steps", "3.0") == 3
    with pytest.deprecated_call(match="'steps_per_round' .* 0.4; use 'finetune.steps'"):
        assert parse_field(P, "steps_per_round", "3") == 3  # the old flat name still parses
    with pytest.deprecated_call(match="'finetune.transitions_per_step'"):
        assert parse_field(P, "finetune_batch_size", "8") == 8
    with pytest.deprecated_call(match="'finetune.batch_size' .* 'finetune.transitions_per_step'"):
        assert setting_key(P, "finetune.batch_size") == "finetune.transitions_per_step"
    with pytest.deprecated_call(match="'finetune.kl_weight'"):
        assert setting_key(P, "alpha_official") == "finetune.kl_weight"
    with pytest.raises(ConfigError, match="'alpha' was replaced by kl_weight"):
        setting_key(P, "finetune.alpha")
    assert parse_field(P, "finetune.lr", "1e-3") == 1e-3
    assert parse_field(P, "finetune.lr", "none") is None
    with pytest.deprecated_call():
        assert parse_field(P, "lr", "null") is None
    assert parse_field(SEIKOConfig, "finetune.chains_per_step", "4") == 4
    assert parse_field(P, "surrogate", "ucb") == "ucb"
    assert parse_field(P, "surrogate_options", '{"n_heads": 2}') == {"n_heads": 2}
    assert parse_field(SQDFConfig, "lora_targets", "a, b") == ("a", "b")
    assert parse_field(SQDFConfig, "lora_targets", '["a"]') == ("a",)
    assert parse_field(_Toy, "limit", "inf") == math.inf
    assert parse_field(_Toy, "mode", "b") == "b"


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("finetune.clear_buffer_each_round", "maybe", "expected a bool"),
        ("finetune.steps", "2.5", r"SQDFOptimizerConfig\.finetune\.steps: expected an integer"),
        (
            "steps_per_round",
            "2.5",
            r"steps_per_round: expected an integer, got 2\.5 \(steps_per_round is now finetune\.steps\)",
        ),
        ("steps_per_round", "many", "expected an integer"),
        ("finetune.lr", "inf", "finite"),
        ("finetune.gamma", "nan", "finite"),
        ("finetune.gamma", "none", "expected a number"),
        ("surrogate.x", "1", "not a nested config"),
        ("surrogate_options", "[1]", "expected a mapping"),
        ("surrogate_options", "{bad", "expected JSON"),
    ],
)
def test_parse_rejects_bad_text(name: str, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_field(SQDFOptimizerConfig, name, text)


def test_parse_unknown_key_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown SQDFOptimizerConfig field 'stepz'.*finetune"):
        parse_field(SQDFOptimizerConfig, "stepz", "3")
    with pytest.raises(ConfigError, match=r"unknown SQDFConfig field 'stepz'.*gamma"):
        parse_field(SQDFOptimizerConfig, "finetune.stepz", "3")
    with pytest.raises(ConfigError, match=r"expected one of 'a', 'b'"):
        parse_field(_Toy, "mode", "c")


def test_old_names_inside_a_dotted_key_are_migrated_too() -> None:
    # the CLI's --set finetune.batch_size=8 means what a stored study's old name means
    with pytest.deprecated_call():
        assert parse_field(SQDFOptimizerConfig, "finetune.batch_size", "8") == 8
        moved = migrate(SQDFOptimizerConfig, {"finetune.batch_size": 8})
    via_dict = config_from_dict(SQDFOptimizerConfig, moved)
    assert via_dict.finetune.transitions_per_step == 8
    now = r"finetune.batch_size is now finetune.transitions_per"
    with pytest.raises(ConfigError, match=now), pytest.deprecated_call():
        parse_field(SQDFOptimizerConfig, "finetune.batch_size", "2.5")
    with pytest.raises(ConfigError, match="'batch_size' was renamed"):  # Python: refused
        config_from_dict(SQDFOptimizerConfig, {"finetune.batch_size": 8})
    with pytest.raises(ConfigError, match="unknown SQDFConfig field 'nope'"):
        parse_field(SQDFOptimizerConfig, "finetune.nope", "1")
