"""Audit metrics of slates: `audit_metrics` (calibration KL, intra-list diversity, coverage, Gini
of exposure, popularity lift and homogenization as mean Jaccard; evaluation.beyond_accuracy),
and those that need the persona model or an ideal recommender, which `slate_audit` adds.

persona entropy: the slate's persona mix is the mean attention alpha_um(i) over its items; its
    entropy divided by log M (1 = the slate serves every persona equally, 0 = one persona
    decides every item), averaged over users.
homogenization relative to an ideal recommender (Chaney, Stewart & Engelhardt, RecSys 2018):
    the mean Jaccard between users' slates minus the same for slates of an ideal recommender:
    how much more alike the model makes people than their own tastes do (0 = no more than the
    ideal). In the simulator the ideal ranks by the users' true utilities; offline
    (evaluation.evaluate) the true utilities are unknown, and the ideal slate is the user's
    held-out targets (`ideal_slates`: up to k of them, a seeded random choice when there are more).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys_pref.evaluation.beyond_accuracy import (
    calibration_kl,
    catalog_coverage,
    gini_exposure,
    homogenization,
    intra_list_diversity,
    popularity_lift,
)
from recsys_pref.models.persona import PersonaRecommender

AUDIT_K = 10


def audit_metrics(
    recommended: np.ndarray,
    profiles: sp.csr_matrix,
    item_popularity: np.ndarray,
    item_categories: np.ndarray | None = None,
    k: int = AUDIT_K,
) -> dict[str, float]:
    """Beyond-accuracy metrics of the top-k lists (see evaluation.beyond_accuracy)."""
    n_items = profiles.shape[1]
    metrics = {
        f"coverage@{k}": catalog_coverage(recommended, n_items, k),
        f"gini@{k}": gini_exposure(recommended, n_items, k),
        f"popularity_lift@{k}": popularity_lift(recommended, item_popularity, profiles, k),
        f"homogenization@{k}": homogenization(recommended, k),
    }
    if item_categories is not None:
        metrics[f"diversity@{k}"] = intra_list_diversity(recommended, item_categories, k)
        metrics[f"calibration_kl@{k}"] = calibration_kl(recommended, item_categories, profiles, k)
    return metrics



def persona_entropy(slate_attention: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Mean over users of the normalised entropy of the slate's persona mix, in [0, 1].

    slate_attention (n, M, L): attention of each persona for each slate item; valid (n, L)
    marks real items (default: all). Users with no valid item are skipped; NaN if none is left
    and 0 with a single persona (M = 1 has no mix)."""
    attention = np.asarray(slate_attention, dtype=np.float64)
    if attention.ndim != 3:
        raise ValueError(f"slate_attention must be (n, M, L), got shape {attention.shape}")
    n, n_personas, length = attention.shape
    valid = np.ones((n, length), bool) if valid is None else np.asarray(valid, bool)
    if valid.shape != (n, length):
        raise ValueError(f"valid must have shape {(n, length)}, got {valid.shape}")
    counts = valid.sum(axis=1)
    kept = counts > 0
    if not kept.any():
        return float("nan")
    if n_personas == 1:
        return 0.0
    mix = (attention * valid[:, None, :]).sum(axis=2)[kept] / counts[kept, None]  # (n_kept, M)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(mix > 0, -mix * np.log(mix), 0.0)
    return float(terms.sum(axis=1).mean() / np.log(n_personas))


def homogenization_vs_ideal(recommended: np.ndarray, ideal: np.ndarray, k: int, seed: int = 0) -> float:
    """Chaney et al.'s homogenization: mean Jaccard of `recommended` slates minus that of the
    `ideal` slates (both (n, L) item ids, -1 padded, top k read), same users in the same rows."""
    if recommended.shape[0] != ideal.shape[0]:
        raise ValueError(f"recommended has {recommended.shape[0]} users, ideal {ideal.shape[0]}")
    return homogenization(recommended, k, seed=seed) - homogenization(ideal, k, seed=seed)


def ideal_slates(targets: sp.spmatrix, k: int, seed: int = 0) -> np.ndarray:
    """(n, k) the offline ideal recommender's slates: each user's held-out target items (n,
    n_items), up to k of them drawn without replacement by default_rng(seed) where there are
    more, -1 padded."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    targets = sp.csr_matrix(targets)
    rng = np.random.default_rng(seed)
    slates = np.full((targets.shape[0], k), -1, np.int64)
    for user in range(targets.shape[0]):
        items = targets.indices[targets.indptr[user]:targets.indptr[user + 1]]
        chosen = rng.choice(items, size=k, replace=False) if len(items) > k else items
        slates[user, : len(chosen)] = chosen
    return slates


def slate_persona_entropy(model: PersonaRecommender, histories: sp.spmatrix, slates: np.ndarray) -> float:
    """persona_entropy of the slates (n, L) item ids, -1 padded, of users with (n, n_items)
    histories, whose attention comes from the model's fold-in of those histories."""
    terms = model.scorer.terms(model.fold_in(histories), np.maximum(slates, 0))
    return persona_entropy(terms.attention, slates >= 0)


def slate_audit(
    recommended: np.ndarray, profiles: sp.spmatrix, item_popularity: np.ndarray, k: int, *,
    item_categories: np.ndarray | None = None, slate_attention: np.ndarray | None = None,
    ideal: np.ndarray | None = None,
) -> dict[str, float]:
    """audit_metrics (coverage, gini, popularity lift, homogenization, and
    with item_categories (n_items, C) diversity and calibration KL), plus persona_entropy@k
    with slate_attention (n, M, L) and homogenization_vs_ideal@k with ideal slates (n, L).
    recommended (n, L) item ids, -1 padded; profiles (n, n_items) the users' histories;
    item_popularity (n_items,) for popularity lift."""
    metrics = audit_metrics(recommended, profiles, item_popularity, item_categories, k)
    if slate_attention is not None:
        metrics[f"persona_entropy@{k}"] = persona_entropy(slate_attention[:, :, :k], recommended[:, :k] >= 0)
    if ideal is not None:
        metrics[f"homogenization_vs_ideal@{k}"] = homogenization_vs_ideal(recommended, ideal, k)
    return metrics
