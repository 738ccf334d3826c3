"""Model configuration files under conf/: YAML with a model name and its hyperparameters.

    model: persona          # a name from recsys_pref.models.MODELS
    params:                 # that model's config fields; omitted fields keep their defaults
      n_personas: 2
"""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from recsys_pref.core.configs import ConfigError, checked_fields
from recsys_pref.models import MODELS, make_model

#: The presets folder: the top-level conf/ of the source tree, installed as the package data
#: `recsys_pref.conf` (see setup.py); a real directory in editable and wheel installs alike.
CONF_DIR = Path(str(files("recsys_pref.conf")))


TOP_LEVEL_KEYS = ("model", "params")


def load_model_config(path: Path | str) -> tuple[str, dict[str, Any]]:
    """(model name, params) from a YAML file; a bare name like "persona" reads conf/persona.yaml.

    Validated here, once, before anything trains: the document is a mapping with only the keys
    `model` and `params`, the model is registered, every param is a field of its config with a
    value of the field's type, and the model accepts them together; otherwise ConfigError
    (a ValueError) names the file and the problem."""
    path = Path(path)
    if not path.suffix and not path.exists():
        path = CONF_DIR / f"{path}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no model configuration at {path}")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(document, dict) or "model" not in document:
        raise ConfigError(f"{path} must be a mapping with a 'model' key (and optional 'params')")
    unknown = sorted(map(str, set(document) - set(TOP_LEVEL_KEYS)))
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {', '.join(unknown)}; valid: {', '.join(TOP_LEVEL_KEYS)}")
    name, params = document["model"], document.get("params") or {}
    if not isinstance(name, str) or name not in MODELS:
        raise ConfigError(f"{path}: unknown model {name!r}; valid: {', '.join(MODELS)}")
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: 'params' must be a mapping of hyperparameters")
    config_class = MODELS[name].config_class
    try:
        params = checked_fields(config_class, params) if config_class is not None else params
        make_model(name, **params)  # the model's own checks of the values together
    except (ValueError, TypeError) as error:
        raise ConfigError(f"{path}: {error}") from error
    return name, params
