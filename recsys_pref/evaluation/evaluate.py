"""Evaluate a fitted model on held-out users: full-catalog ranking, fold-in items excluded.

Every held-out user counts, including users who get fewer than K recommendations (their
missing slots score zero). Ranking metrics use the split's recall definition; the audit
metrics (coverage, exposure Gini, popularity lift, homogenization, Chaney's homogenization
relative to an ideal recommender whose slates are the users' held-out targets, persona entropy
of the slate for persona models, and where item categories are given intra-list diversity
and calibration KL) are computed on the top-10 (evaluation.audit defines the last three).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from recsys_pref.data.splits import HeldOut, RecallDenominator
from recsys_pref.core.metrics import ranking_metrics
from recsys_pref.core.ranking import top_k
from recsys_pref.evaluation.audit import (
    AUDIT_K,
    audit_metrics,
    homogenization_vs_ideal,
    ideal_slates,
    slate_persona_entropy,
)
from recsys_pref.models.base import Recommender
from recsys_pref.models.persona import PersonaRecommender

DEFAULT_KS = (10, 20, 50, 100)


@dataclass(frozen=True)
class Evaluation:
    """metrics: name -> value (keys like "ndcg@10", "coverage@10", "recommend_users_per_s").
    recommended: (n_users, max_k) item indices per held-out user, -1 padded."""

    metrics: dict[str, float]
    recommended: np.ndarray = field(repr=False)


def recommend_held_out(
    model: Recommender,
    held_out: HeldOut,
    k: int,
    catalog: np.ndarray | None = None,
    batch_size: int = 1024,
    progress: bool = False,
) -> np.ndarray:
    """(n_users, k) top-k item indices for each held-out user, fold-in items and items outside
    `catalog` (a boolean mask) excluded; batched so memory stays at batch_size x n_items."""
    banned = None if catalog is None else ~catalog
    recommended = np.empty((len(held_out), k), dtype=np.int64)
    starts = range(0, len(held_out), batch_size)
    for start in tqdm(starts, desc=f"ranking {model.name}", disable=not progress, leave=False):
        stop = min(start + batch_size, len(held_out))
        history = held_out.fold_in[start:stop]
        userids = held_out.users[start:stop] if held_out.known else None
        scores = model.score(history, userids)
        recommended[start:stop], _ = top_k(scores, k, exclude=history, banned_items=banned)
    return recommended


def model_audit_metrics(model: Recommender, held_out: HeldOut, recommended: np.ndarray) -> dict[str, float]:
    """homogenization_vs_ideal@k (ideal slates: the held-out targets) and, for persona models,
    persona_entropy@k of the (n_users, k) recommended lists (evaluation.audit)."""
    k = recommended.shape[1]
    metrics = {f"homogenization_vs_ideal@{k}": homogenization_vs_ideal(recommended, ideal_slates(held_out.targets, k), k)}
    if isinstance(model, PersonaRecommender):
        metrics[f"persona_entropy@{k}"] = slate_persona_entropy(model, held_out.fold_in, recommended)
    return metrics


def evaluate(
    model: Recommender,
    held_out: HeldOut,
    *,
    catalog: np.ndarray | None = None,
    recall_denominator: RecallDenominator = "min_k_targets",
    item_popularity: np.ndarray | None = None,
    item_categories: np.ndarray | None = None,
    ks: tuple[int, ...] = DEFAULT_KS,
    progress: bool = False,
) -> Evaluation:
    """Ranking and audit metrics of a fitted `model` on `held_out` users.

    item_popularity: (n_items,) training counts for popularity lift (default: counts over
    the held-out users' fold-in histories).
    item_categories: (n_items, C) row-normalised genre/persona mix, for diversity and
    calibration; omitted when None.
    """
    if len(held_out) == 0:
        raise ValueError("no held-out users to evaluate")
    started = time.perf_counter()
    recommended = recommend_held_out(model, held_out, max(ks), catalog, progress=progress)
    elapsed = time.perf_counter() - started
    metrics = ranking_metrics(recommended, held_out.targets, ks, denominator=recall_denominator)
    popularity = item_popularity if item_popularity is not None else np.asarray(held_out.fold_in.sum(axis=0)).ravel()
    metrics |= audit_metrics(recommended, held_out.fold_in, popularity, item_categories)
    metrics |= model_audit_metrics(model, held_out, recommended[:, :AUDIT_K])
    metrics["recommend_users_per_s"] = len(held_out) / max(elapsed, 1e-9)
    metrics["n_users"] = float(len(held_out))
    return Evaluation(metrics, recommended)
