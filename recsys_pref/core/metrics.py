"""Top-k ranking accuracy metrics, per user, vectorised over users.

Inputs follow one convention throughout the package:

- ``recommended``: int64 array (n_users, L). Row u is user u's ranked list, best first, padded
  with -1 where the user has fewer than L recommendations. A -1 slot is an empty position: it
  is never a hit but still occupies its rank. A row of -1 only is a user with no
  recommendations; that user scores 0 on every accuracy metric.
- ``targets``: sparse (n_users, n_items); a stored nonzero marks a relevant item (binary gain).
- ``k``: only the first k columns are used; k larger than L means all L columns. Ideal values
  (recall and MAP denominators, IDCG) still use k, so a list shorter than k is penalised.

Every per-user function returns float64 (n_users,). Users with no targets get NaN, since no
metric is defined for them; the evaluation protocol guarantees targets, and the means in
:func:`ranking_metrics` drop them. An item repeated within a row counts as a hit only at its
first position, so no metric can exceed its maximum.
"""
from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Literal

import numpy as np
import scipy.sparse as sp

RecallDenominator = Literal["min_k_targets", "targets"]
_DENOMINATORS = ("min_k_targets", "targets")


def check_recommended(recommended: np.ndarray, n_items: int, k: int) -> np.ndarray:
    """Validate a padded recommendation matrix and return its first k columns (n_users, <=k).

    Raises ValueError when `recommended` is not 2-D integer ids, k < 1, or an id lies outside
    -1 (padding) .. n_items - 1.
    """
    recommended = np.asarray(recommended)
    if recommended.ndim != 2:
        raise ValueError(f"recommended must be 2-D (n_users, L), got shape {recommended.shape}")
    if recommended.size and not np.issubdtype(recommended.dtype, np.integer):
        raise ValueError(f"recommended must hold integer item ids, got dtype {recommended.dtype}")
    k = operator.index(k)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if recommended.size:
        if recommended.max() >= n_items:
            raise ValueError(
                f"recommended holds item id {recommended.max()} >= n_items ({n_items})"
            )
        if recommended.min() < -1:
            raise ValueError(f"recommended holds id {recommended.min()}; only -1 may pad a row")
    return recommended[:, :k].astype(np.int64, copy=False)


def first_occurrence_mask(top: np.ndarray) -> np.ndarray:
    """Boolean (n_users, k): True at real items (not -1) not already listed earlier in the row."""
    order = np.argsort(top, axis=1, kind="stable")
    ranked = np.take_along_axis(top, order, axis=1)
    repeat_sorted = np.zeros(top.shape, dtype=bool)
    repeat_sorted[:, 1:] = ranked[:, 1:] == ranked[:, :-1]
    repeat = np.zeros(top.shape, dtype=bool)
    np.put_along_axis(repeat, order, repeat_sorted, axis=1)
    return (top >= 0) & ~repeat


def _binary_targets(targets: sp.spmatrix | sp.sparray, n_users: int) -> sp.csr_matrix:
    """Targets as CSR with sorted indices and no explicit zeros; checks the row count."""
    if not sp.issparse(targets):
        raise ValueError("targets must be a scipy.sparse matrix (n_users, n_items)")
    if targets.shape[0] != n_users:
        raise ValueError(
            f"recommended has {n_users} rows but targets has {targets.shape[0]}"
        )
    csr = sp.csr_matrix(targets, copy=True)
    csr.eliminate_zeros()
    csr.sum_duplicates()
    return csr


def hit_matrix(
    recommended: np.ndarray, targets: sp.spmatrix | sp.sparray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Hits in the top k and target counts: (bool (n_users, min(k, L)), int64 (n_users,)).

    hits[u, p] is True when position p + 1 of user u's list is a relevant item seen there first.
    The lookup encodes (user, item) pairs as user * n_items + item and binary-searches them in
    the sorted target keys, so it costs O(n_users * k * log nnz) with no loop over users.
    """
    recommended = np.asarray(recommended)
    if recommended.ndim != 2:
        raise ValueError(f"recommended must be 2-D (n_users, L), got shape {recommended.shape}")
    csr = _binary_targets(targets, recommended.shape[0])
    n_users, n_items = csr.shape
    top = check_recommended(recommended, n_items, k)
    n_targets = np.diff(csr.indptr).astype(np.int64)
    target_keys = np.repeat(np.arange(n_users, dtype=np.int64), n_targets) * n_items
    target_keys += csr.indices
    # Padding (-1) would alias the previous user's last item; the first-occurrence mask drops it.
    keys = np.arange(n_users, dtype=np.int64)[:, None] * n_items + top
    pos = np.minimum(np.searchsorted(target_keys, keys), max(target_keys.size - 1, 0))
    found = target_keys[pos] == keys if target_keys.size else np.zeros(top.shape, dtype=bool)
    return found & first_occurrence_mask(top), n_targets


def _check_denominator(denominator: str) -> None:
    if denominator not in _DENOMINATORS:
        raise ValueError(f"denominator must be one of {_DENOMINATORS}, got {denominator!r}")


def _nan_without_targets(values: np.ndarray, n_targets: np.ndarray) -> np.ndarray:
    return np.where(n_targets > 0, values, np.nan)


def _ideal_hits(n_targets: np.ndarray, k: int) -> np.ndarray:
    """min(k, |T_u|) as float, with 0 replaced by 1 to keep divisions quiet (masked later)."""
    return np.maximum(np.minimum(n_targets, k), 1).astype(np.float64)


def _recall(hits: np.ndarray, n_targets: np.ndarray, k: int, denominator: str) -> np.ndarray:
    n_hits = hits.sum(axis=1, dtype=np.float64)
    if denominator == "targets":
        denom = np.maximum(n_targets, 1).astype(np.float64)
    else:
        denom = _ideal_hits(n_targets, k)
    return _nan_without_targets(n_hits / denom, n_targets)


def _ndcg(hits: np.ndarray, n_targets: np.ndarray, k: int) -> np.ndarray:
    discounts = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))
    dcg = hits @ discounts[: hits.shape[1]]
    ideal = np.cumsum(discounts)[np.minimum(np.maximum(n_targets, 1), k) - 1]
    return _nan_without_targets(dcg / ideal, n_targets)


def _hit_rate(hits: np.ndarray, n_targets: np.ndarray) -> np.ndarray:
    return _nan_without_targets(hits.any(axis=1).astype(np.float64), n_targets)


def _mrr(hits: np.ndarray, n_targets: np.ndarray) -> np.ndarray:
    if hits.shape[1] == 0:
        return _nan_without_targets(np.zeros(hits.shape[0]), n_targets)
    first = hits.argmax(axis=1)
    rr = np.where(hits.any(axis=1), 1.0 / (first + 1.0), 0.0)
    return _nan_without_targets(rr, n_targets)


def _map(hits: np.ndarray, n_targets: np.ndarray, k: int) -> np.ndarray:
    ranks = np.arange(1, hits.shape[1] + 1, dtype=np.float64)
    precision = np.cumsum(hits, axis=1) / ranks
    ap = (precision * hits).sum(axis=1) / _ideal_hits(n_targets, k)
    return _nan_without_targets(ap, n_targets)


def recall_at_k(
    recommended: np.ndarray,
    targets: sp.spmatrix | sp.sparray,
    k: int,
    denominator: RecallDenominator = "min_k_targets",
) -> np.ndarray:
    """Per-user recall@k (n_users,): hits in the top k over min(k, |T|), or over |T|.

    "min_k_targets" makes 1.0 reachable for users with more than k targets; "targets" is the
    plain hits / |T| used by the Gowalla/LightGCN benchmarks (and by ranx).
    """
    _check_denominator(denominator)
    hits, n_targets = hit_matrix(recommended, targets, k)
    return _recall(hits, n_targets, k, denominator)


def ndcg_at_k(recommended: np.ndarray, targets: sp.spmatrix | sp.sparray, k: int) -> np.ndarray:
    """Per-user binary nDCG@k (n_users,).

    DCG sums 1 / log2(p + 1) over hit positions p (1-based); the ideal DCG places
    min(k, |T|) hits at the top positions.
    """
    hits, n_targets = hit_matrix(recommended, targets, k)
    return _ndcg(hits, n_targets, k)


def hit_rate_at_k(
    recommended: np.ndarray, targets: sp.spmatrix | sp.sparray, k: int
) -> np.ndarray:
    """Per-user hit rate@k (n_users,): 1.0 when any of the top k is relevant, else 0.0."""
    hits, n_targets = hit_matrix(recommended, targets, k)
    return _hit_rate(hits, n_targets)


def mrr_at_k(recommended: np.ndarray, targets: sp.spmatrix | sp.sparray, k: int) -> np.ndarray:
    """Per-user reciprocal rank@k (n_users,): 1 / rank of the first hit in the top k, else 0."""
    hits, n_targets = hit_matrix(recommended, targets, k)
    return _mrr(hits, n_targets)


def map_at_k(recommended: np.ndarray, targets: sp.spmatrix | sp.sparray, k: int) -> np.ndarray:
    """Per-user average precision@k (n_users,).

    Sums precision@p over hit positions p in the top k and divides by min(k, |T|), so a list
    whose top k are all relevant scores 1.0 even when |T| > k. (ranx divides by |T| instead.)
    """
    hits, n_targets = hit_matrix(recommended, targets, k)
    return _map(hits, n_targets, k)


def mean_ignoring_nan(values: np.ndarray) -> float:
    """Mean over the finite entries of `values`; NaN (without a warning) when there are none."""
    values = np.asarray(values, dtype=np.float64)
    kept = values[~np.isnan(values)]
    return float(kept.mean()) if kept.size else float("nan")


def ranking_metrics(
    recommended: np.ndarray,
    targets: sp.spmatrix | sp.sparray,
    ks: Sequence[int] = (10, 20, 50, 100),
    denominator: RecallDenominator = "min_k_targets",
) -> dict[str, float]:
    """Means over users with targets of nDCG, recall, hit rate, MRR and MAP at every k in `ks`.

    Keys are "ndcg@k", "recall@k", "hit_rate@k", "mrr@k" and "map@k". Users without targets
    (NaN per user) are left out of every mean; users without recommendations count as 0.
    The hit matrix is built once at max(ks) and sliced for the smaller cutoffs.
    """
    _check_denominator(denominator)
    ks = [operator.index(k) for k in ks]
    if not ks:
        raise ValueError("ks must name at least one cutoff")
    if min(ks) < 1:
        raise ValueError(f"every k must be >= 1, got {ks}")
    hits_all, n_targets = hit_matrix(recommended, targets, max(ks))
    result: dict[str, float] = {}
    for k in ks:
        hits = hits_all[:, :k]
        result[f"ndcg@{k}"] = mean_ignoring_nan(_ndcg(hits, n_targets, k))
        result[f"recall@{k}"] = mean_ignoring_nan(_recall(hits, n_targets, k, denominator))
        result[f"hit_rate@{k}"] = mean_ignoring_nan(_hit_rate(hits, n_targets))
        result[f"mrr@{k}"] = mean_ignoring_nan(_mrr(hits, n_targets))
        result[f"map@{k}"] = mean_ignoring_nan(_map(hits, n_targets, k))
    return result
