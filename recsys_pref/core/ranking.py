"""Full-catalog top-K with exclusions and deterministic tie-breaking.

Ties are broken by the lower item index first (a stable sort on -score), so the same scores
always give the same list. Excluded items (a user's history, banned items, items outside the
catalog) never appear; when fewer than K items remain the row is padded with id -1 and score
-inf, which every metric treats as "no recommendation".
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def top_k(
    scores: np.ndarray,
    k: int,
    exclude: sp.csr_matrix | None = None,
    banned_items: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k item indices and scores per row of `scores` (n, n_items).

    exclude: (n, n_items) sparse; its nonzero entries are removed per row.
    banned_items: item indices (or a boolean mask over items) removed for every row.
    Returns (ids int64 (n, k), values float32 (n, k)), padded with -1 / -inf.
    NaN scores are rejected: they would make the order meaningless.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    scores = np.array(scores, dtype=np.float32, copy=True, ndmin=2)
    n_users, n_items = scores.shape
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN; cannot rank")
    if exclude is not None:
        exclude = sp.csr_matrix(exclude)
        if exclude.shape != scores.shape:
            raise ValueError(f"exclude has shape {exclude.shape}, scores {scores.shape}")
        rows = np.repeat(np.arange(n_users), np.diff(exclude.indptr))
        scores[rows, exclude.indices] = -np.inf
    if banned_items is not None:
        banned = np.asarray(banned_items)
        if banned.dtype == bool:
            if banned.shape != (n_items,):
                raise ValueError(f"banned item mask must have shape ({n_items},)")
        elif banned.size and (banned.min() < 0 or banned.max() >= n_items):
            raise ValueError(f"banned item ids must lie in 0..{n_items - 1}")
        scores[:, banned] = -np.inf
    k_eff = min(k, n_items)
    if k_eff < n_items:
        # argpartition then a stable sort of the candidates; candidates tied with the k-th
        # score are all kept so the lower-index rule decides among them.
        kth = np.partition(scores, n_items - k_eff, axis=1)[:, n_items - k_eff][:, None]
        candidate_mask = scores >= kth
    else:
        candidate_mask = np.ones_like(scores, dtype=bool)
    ids = np.full((n_users, k), -1, dtype=np.int64)
    values = np.full((n_users, k), -np.inf, dtype=np.float32)
    # Rows with exactly k_eff candidates (no tie with the k-th score) are sorted all at once, when
    # k_eff < n_items (sorting whole rows at once measured slower than the row loop below).
    untied = candidate_mask.sum(axis=1) == k_eff if k_eff < n_items else np.zeros(n_users, bool)
    if untied.any():
        rows = np.flatnonzero(untied)
        candidates = np.nonzero(candidate_mask[rows])[1].reshape(len(rows), k_eff)  # ascending item index
        candidate_scores = np.take_along_axis(scores[rows], candidates, axis=1)
        order = np.argsort(-candidate_scores, axis=1, kind="stable")  # ties: the lower index first
        best = np.take_along_axis(candidate_scores, order, axis=1)
        ids[rows, :k_eff] = np.where(best > -np.inf, np.take_along_axis(candidates, order, axis=1), -1)
        values[rows, :k_eff] = best
    for row in np.flatnonzero(~untied):  # rows with candidates tied with the k-th score
        candidates = np.flatnonzero(candidate_mask[row])
        order = candidates[np.argsort(-scores[row, candidates], kind="stable")][:k_eff]
        order = order[scores[row, order] > -np.inf]
        ids[row, : len(order)] = order
        values[row, : len(order)] = scores[row, order]
    return ids, values
