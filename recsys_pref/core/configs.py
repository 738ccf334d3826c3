"""Frozen dataclass configs rebuilt from plain mappings (JSON in an artifact, YAML in conf/).

`config_from_dict(ConfigClass, values)` is the inverse of `dataclasses.asdict`: each value is
checked against its field's annotation (int, float, bool, str, Literal, `X | None`, tuples,
nested dataclasses) before the dataclass's own `__post_init__` checks run, so a stored or
hand-written config with an unknown field or a wrong type fails with a message naming the
field instead of misbehaving later. Fields that are absent keep their defaults (an artifact
written before a field existed still loads).
"""
from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union

Config = TypeVar("Config")


class ConfigError(ValueError):
    """A mapping does not describe a valid config: unknown field, wrong type or bad value."""


def config_from_dict(config_class: type[Config], values: Mapping[str, Any]) -> Config:
    """A `config_class` instance from `values` (as `dataclasses.asdict` wrote it).

    Raises ConfigError naming unknown fields, values of the wrong type, and values the
    dataclass itself rejects.
    """
    checked = checked_fields(config_class, values)
    try:
        return config_class(**checked)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{config_class.__name__}: {error}") from error


def checked_fields(config_class: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` checked field by field against `config_class`'s annotations (converted as
    `config_from_dict` does) without building the config, for callers that build it their own
    way (a persona preset); raises ConfigError naming unknown fields and wrong types."""
    name = config_class.__name__
    if not isinstance(values, Mapping):
        raise ConfigError(f"{name} must be a mapping of field names to values, got {type(values).__name__}")
    hints = typing.get_type_hints(config_class)
    known = [field.name for field in dataclasses.fields(config_class) if field.init]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{name} has no field(s) {', '.join(map(str, unknown))}; valid: {', '.join(known)}")
    return {key: _checked(value, hints[key], f"{name}.{key}") for key, value in values.items()}


def _checked(value: Any, annotation: Any, where: str) -> Any:
    """`value` converted to `annotation` (int -> float, list -> tuple, dict -> dataclass), or ConfigError."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return value
    if origin is Literal:
        if value not in typing.get_args(annotation):
            raise ConfigError(f"{where} must be one of {typing.get_args(annotation)}, got {value!r}")
        return value
    if origin in (Union, types.UnionType):
        for arm in typing.get_args(annotation):
            try:
                return _checked(value, arm, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where} must be {_describe(annotation)}, got {value!r}")
    if origin is tuple:
        return _checked_tuple(value, typing.get_args(annotation), where)
    if dataclasses.is_dataclass(annotation):
        return config_from_dict(annotation, value)
    if annotation is type(None):
        if value is not None:
            raise ConfigError(f"{where} must be None, got {value!r}")
        return value
    return _checked_scalar(value, annotation, where)


def _checked_tuple(value: Any, arguments: tuple[Any, ...], where: str) -> tuple[Any, ...]:
    """A list or tuple checked item by item against tuple[X, ...] or tuple[X, Y, ...]."""
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where} must be a list, got {value!r}")
    if len(arguments) == 2 and arguments[1] is Ellipsis:
        return tuple(_checked(item, arguments[0], f"{where}[{i}]") for i, item in enumerate(value))
    if len(value) != len(arguments):
        raise ConfigError(f"{where} must have {len(arguments)} items, got {len(value)}")
    return tuple(_checked(item, kind, f"{where}[{i}]") for i, (item, kind) in enumerate(zip(value, arguments)))


def _checked_scalar(value: Any, annotation: Any, where: str) -> Any:
    """bool, int, float (an int is accepted and converted) and str, with bools never taken as numbers."""
    if annotation is bool:
        ok = isinstance(value, bool)
    elif annotation is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif annotation is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif annotation is str:
        ok = isinstance(value, str)
    else:
        raise TypeError(f"{where}: config fields of type {annotation!r} are not supported")
    if not ok:
        raise ConfigError(f"{where} must be {_describe(annotation)}, got {value!r} ({type(value).__name__})")
    return value


def _describe(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
