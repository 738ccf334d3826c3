"""Specification of core.configs.config_from_dict: a frozen dataclass config back from the
mapping `dataclasses.asdict` wrote, with unknown fields and wrong types named."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

import pytest

from recsys_pref.core.configs import ConfigError, config_from_dict
from recsys_pref.models import MODELS


@dataclass(frozen=True)
class Inner:
    depth: int = 1


@dataclass(frozen=True)
class Example:
    count: int = 3
    rate: float = 0.5
    enabled: bool = False
    label: str = "a"
    mode: Literal["fast", "exact"] = "fast"
    budget: float | None = None
    columns: tuple[str, ...] = ("x",)
    inner: Inner = field(default_factory=Inner)

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError(f"count must be >= 0, got {self.count}")


def test_asdict_round_trips_for_every_field_type() -> None:
    config = Example(count=7, rate=2.5, enabled=True, label="b", mode="exact", budget=1.5, columns=("p", "q"),
                     inner=Inner(4))
    assert config_from_dict(Example, asdict(config)) == config


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_registered_model_config_round_trips(name: str) -> None:
    config = MODELS[name]().config
    assert config_from_dict(type(config), asdict(config)) == config


def test_absent_fields_keep_their_defaults() -> None:
    assert config_from_dict(Example, {"count": 9}) == Example(count=9)


def test_an_integer_is_accepted_for_a_float_and_stored_as_float() -> None:
    rate = config_from_dict(Example, {"rate": 2}).rate
    assert rate == 2.0 and isinstance(rate, float)


def test_unknown_fields_are_named_with_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="Example has no field.*colour.*valid: count, rate"):
        config_from_dict(Example, {"colour": "red"})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"count": "3"}, "Example.count must be int, got '3'"),
        ({"count": True}, "Example.count must be int, got True"),
        ({"rate": "fast"}, "Example.rate must be float"),
        ({"enabled": 1}, "Example.enabled must be bool, got 1"),
        ({"mode": "slow"}, r"Example.mode must be one of \('fast', 'exact'\), got 'slow'"),
        ({"budget": "lots"}, "Example.budget must be float | None, got 'lots'"),
        ({"columns": "x"}, "Example.columns must be a list"),
        ({"columns": ["x", 2]}, r"Example.columns\[1\] must be str"),
        ({"inner": {"depth": 1.5}}, "Inner.depth must be int"),
    ],
)
def test_a_value_of_the_wrong_type_is_named(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict(Example, values)


def test_a_value_the_dataclass_rejects_is_reported_as_a_config_error() -> None:
    with pytest.raises(ConfigError, match="Example: count must be >= 0"):
        config_from_dict(Example, {"count": -1})


def test_a_mapping_is_required() -> None:
    with pytest.raises(ConfigError, match="must be a mapping"):
        config_from_dict(Example, [("count", 1)])


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)
