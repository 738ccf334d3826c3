"""Grid search on validation users with a fixed budget, the same for every model.

A model's grid is its `grid` class attribute (at most `budget` configurations are tried, in
order). Each configuration is fitted on the split's `val_train` and scored on the `val`
users; the winner is the one with the best `metric`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from recsys_pref.data.splits import Split
from recsys_pref.evaluation.evaluate import evaluate
from recsys_pref.models import make_model
from recsys_pref.models.base import Recommender

SEED_FIELDS = ("seed", "random_state")


def build_model(name: str, params: dict[str, Any], seed: int) -> Recommender:
    """`make_model(name, **params)` with the model's seed field (if it has one) set to `seed`."""
    model = make_model(name, **params)
    if model.config is not None:
        names = {item.name for item in dataclasses.fields(model.config)}
        seeded = {field: seed for field in SEED_FIELDS if field in names and field not in params}
        if seeded:
            model.config = dataclasses.replace(model.config, **seeded)
    return model


@dataclass(frozen=True)
class TuningResult:
    best_params: dict[str, Any]
    trials: list[dict[str, Any]]  # one per configuration: its params and validation metric


def tune(
    name: str,
    split: Split,
    grid: list[dict[str, Any]],
    *,
    metric: str,
    budget: int,
    seed: int,
) -> TuningResult:
    """Best configuration of model `name` among the first `budget` entries of `grid`."""
    if budget < 1:
        raise ValueError("tuning budget must be >= 1")
    candidates = grid[:budget] or [{}]
    trials = []
    for params in candidates:
        model = build_model(name, params, seed).fit(split.val_train)
        result = evaluate(model, split.val, catalog=split.catalog, recall_denominator=split.recall_denominator)
        trials.append({"params": params, metric: result.metrics[metric]})
    best = int(np.nanargmax([trial[metric] for trial in trials]))
    return TuningResult(candidates[best], trials)
