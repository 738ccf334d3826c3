"""Recommender models: the shared interface and the baselines, with a name -> class registry.

Every model class has a `name`, a frozen dataclass `config_class` and a tuning `grid` (a list
of at most 8 hyperparameter dicts, the same budget for every model).
"""
from __future__ import annotations

from dataclasses import fields
from typing import Any

from recsys_pref.models.als import ALS, ALSConfig
from recsys_pref.models.base import NotFittedError, Recommender, check_user_items
from recsys_pref.models.bpr import BPR, BPRConfig
from recsys_pref.models.ease import EASE, EASEConfig
from recsys_pref.models.itemknn import ItemKNN, ItemKNNConfig
from recsys_pref.models.persona import AmpCF, PersonaConfig, PersonaModel, PersonaRecommender, PersonaState, PrefLinear
from recsys_pref.models.popularity import Popularity, PopularityConfig

#: name -> model class. Other models (e.g. the persona model) register by adding an entry.
BASELINES: dict[str, type[Recommender]] = {
    cls.name: cls for cls in (Popularity, ItemKNN, EASE, ALS, BPR)
}
#: The same dict under the name the benchmark uses (an alias, so one registration serves both).
#: every model by name: the baselines and the three configurations of the persona model.
MODELS: dict[str, type[Recommender]] = BASELINES | {cls.name: cls for cls in (PersonaModel, PrefLinear, AmpCF)}


def make_model(name: str, **params: Any) -> Recommender:
    """An unfitted model `name` with hyperparameters `params` (the rest at their defaults).

    The model starts from its own defaults (a persona variant from its preset) with `params`
    overriding them. Unknown names and hyperparameters raise ValueError listing the valid ones.
    """
    try:
        cls = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(sorted(MODELS))}") from None
    config_class = getattr(cls, "config_class", None)
    if config_class is None:
        return cls(**params)
    valid = [field.name for field in fields(config_class)]
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(
            f"{name} has no hyperparameter(s) {', '.join(unknown)}; valid: {', '.join(valid) or '(none)'}"
        )
    return cls(**params)


__all__ = [
    "ALS",
    "ALSConfig",
    "BASELINES",
    "BPR",
    "BPRConfig",
    "EASE",
    "EASEConfig",
    "ItemKNN",
    "ItemKNNConfig",
    "MODELS",
    "AmpCF",
    "PersonaConfig",
    "PersonaModel",
    "PersonaRecommender",
    "PersonaState",
    "PrefLinear",
    "NotFittedError",
    "Popularity",
    "PopularityConfig",
    "Recommender",
    "check_user_items",
    "make_model",
]
