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

from recsys_pref.models import MODELS

#: The presets folder: the top-level conf/ of the source tree, installed as the package data
#: `recsys_pref.conf` (see setup.py); a real directory in editable and wheel installs alike.
CONF_DIR = Path(str(files("recsys_pref.conf")))


def load_model_config(path: Path | str) -> tuple[str, dict[str, Any]]:
    """(model name, params) from a YAML file; a bare name like "persona" reads conf/persona.yaml."""
    path = Path(path)
    if not path.suffix and not path.exists():
        path = CONF_DIR / f"{path}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no model configuration at {path}")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ValueError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(document, dict) or "model" not in document:
        raise ValueError(f"{path} must be a mapping with a 'model' key (and optional 'params')")
    name, params = document["model"], document.get("params") or {}
    if name not in MODELS:
        raise ValueError(f"{path}: unknown model {name!r}; valid: {', '.join(MODELS)}")
    if not isinstance(params, dict):
        raise ValueError(f"{path}: 'params' must be a mapping of hyperparameters")
    return name, params
