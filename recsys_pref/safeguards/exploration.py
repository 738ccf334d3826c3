"""Exploration: slate slots given to the shared bases (tastes) a user has seen least.

Each item belongs to its dominant base (the argmax of its base distribution,
safeguards.calibration.base_distributions). A user's exposure to base k is its mean weight over
the history, divided by its mean weight over the catalog (so 1 = as often as a random item),
and the `n_bases` bases with the lowest exposure are the ones the user has seen least. The
exploration slots get the best-scored items whose dominant base is one of those.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys_pref.core.ranking import top_k
from recsys_pref.safeguards.calibration import history_mix


def least_seen_bases(histories: sp.spmatrix, item_bases: np.ndarray, n_bases: int) -> np.ndarray:
    """(n, n_bases) the bases each user's history shows least, relative to the catalog.
    histories (n, n_items); item_bases (n_items, K) rows summing to 1."""
    exposure = history_mix(histories, item_bases) / np.maximum(item_bases.mean(axis=0), 1e-12)
    return np.argsort(exposure, axis=1, kind="stable")[:, : min(n_bases, item_bases.shape[1])]


def exploration_items(
    scores: np.ndarray, histories: sp.spmatrix, item_bases: np.ndarray, n_slots: int, n_bases: int,
    exclude: sp.spmatrix | None = None, banned_items: np.ndarray | None = None,
) -> np.ndarray:
    """(n, n_slots) the best-scored items of each user's least-seen bases, -1 where none is left.

    scores (n, n_items) the model's scores; exclude (n, n_items) items not to pick (the history
    and the rest of the slate); banned_items: a mask or ids removed for every user."""
    least = least_seen_bases(histories, item_bases, n_bases)  # (n, n_bases)
    dominant = item_bases.argmax(axis=1)  # (n_items,)
    in_least = np.zeros((scores.shape[0], item_bases.shape[1]), bool)
    np.put_along_axis(in_least, least, True, axis=1)
    allowed = in_least[:, dominant]  # (n, n_items)
    ids, _ = top_k(np.where(allowed, scores, -np.inf), n_slots, exclude=exclude, banned_items=banned_items)
    return ids
