"""Beyond-accuracy measures of a recommendation slate: coverage, diversity, exposure,
popularity bias, calibration and homogenization across users.

``recommended`` follows :mod:`recsys_pref.core.metrics`: int64 (n_users, L), ranked,
padded with -1, of which only the first k columns count. Each user's top k is read as the set of
distinct items in it (padding dropped, a repeated id counted once), because every measure here
is about which items a user is shown, not where. Each function returns one float for the slate.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys_pref.core.metrics import check_recommended, first_occurrence_mask

_NO_ITEM_LIMIT = np.iinfo(np.int64).max


def slate_matrix(recommended: np.ndarray, n_items: int, k: int) -> sp.csr_matrix:
    """Binary CSR (n_users, n_items): 1 where the item is in the user's top k."""
    top = check_recommended(recommended, n_items, k)
    keep = first_occurrence_mask(top)
    rows = np.nonzero(keep)[0]
    data = np.ones(rows.size, dtype=np.float64)
    return sp.csr_matrix((data, (rows, top[keep])), shape=(top.shape[0], n_items))


def _binary_profiles(profiles: sp.spmatrix | sp.sparray, shape: tuple[int, int]) -> sp.csr_matrix:
    """Profiles as a binary CSR of the given (n_users, n_items) shape."""
    if not sp.issparse(profiles):
        raise ValueError("profiles must be a scipy.sparse matrix (n_users, n_items)")
    if profiles.shape != shape:
        raise ValueError(f"profiles has shape {profiles.shape}, expected {shape}")
    csr = sp.csr_matrix(profiles, copy=True)
    csr.eliminate_zeros()
    csr.sum_duplicates()
    csr.data[:] = 1.0
    return csr.astype(np.float64)


def _row_sums(matrix: sp.spmatrix | np.ndarray) -> np.ndarray:
    return np.asarray(matrix.sum(axis=1), dtype=np.float64).ravel()


def _dense(matrix: np.ndarray | sp.spmatrix) -> np.ndarray:
    return matrix.toarray() if sp.issparse(matrix) else np.asarray(matrix)


def catalog_coverage(recommended: np.ndarray, n_items: int, k: int) -> float:
    """Share of the n_items catalog that appears in at least one user's top k, in [0, 1]."""
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    top = check_recommended(recommended, n_items, k)
    return float(np.unique(top[top >= 0]).size / n_items)


def intra_list_diversity(
    recommended: np.ndarray, item_features: np.ndarray | sp.spmatrix, k: int
) -> float:
    """Mean over users with >= 2 items of the mean pairwise cosine distance in their top k.

    item_features: (n_items, f), dense or sparse. An all-zero feature vector has cosine
    similarity 0 with every item (distance 1). NaN when no user has two items.
    Pairwise similarities come from unit vectors v_i: sum_{i<j} v_i.v_j =
    (|sum_i v_i|^2 - #nonzero v_i) / 2, so no (k x k) block per user is ever built.
    """
    features = item_features if sp.issparse(item_features) else np.asarray(item_features, float)
    if features.ndim != 2:
        raise ValueError(f"item_features must be 2-D (n_items, f), got shape {features.shape}")
    slate = slate_matrix(recommended, features.shape[0], k)
    squares = features.multiply(features) if sp.issparse(features) else features**2
    norms = np.sqrt(_row_sums(squares))
    nonzero = norms > 0
    scale = sp.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=nonzero))
    summed = slate @ (scale @ features)
    squared = summed.multiply(summed) if sp.issparse(summed) else summed**2
    n_listed = _row_sums(slate)
    similarity_sum = (_row_sums(squared) - slate @ nonzero.astype(np.float64)) / 2.0
    eligible = n_listed >= 2
    if not eligible.any():
        return float("nan")
    n_pairs = n_listed[eligible] * (n_listed[eligible] - 1) / 2.0
    return float(np.mean(1.0 - similarity_sum[eligible] / n_pairs))


def gini_exposure(recommended: np.ndarray, n_items: int, k: int) -> float:
    """Gini coefficient of how many top-k lists each of the n_items catalog items appears in.

    Zero-exposure items count, so recommending a small head of the catalog scores near 1
    (at most (n_items - 1) / n_items); equal exposure for every item scores 0.
    NaN when nothing at all is recommended.
    """
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    return gini(np.asarray(slate_matrix(recommended, n_items, k).sum(axis=0)).ravel())


def gini(exposure: np.ndarray) -> float:
    """Gini coefficient of non-negative exposure counts (n_items,), zeros included (Chaney et
    al., RecSys 2018, measure the popularity concentration of a feedback loop with it): 0 when
    every item has the same exposure, (n_items - 1) / n_items when one item has all of it.
    Counts summed over chunks of users give the population's Gini. NaN when all are zero."""
    values = np.sort(np.asarray(exposure, dtype=np.float64).ravel())
    if values.size == 0 or values.min() < 0:
        raise ValueError("exposure must be a non-empty vector of non-negative counts")
    total = values.sum()
    if total == 0:
        return float("nan")
    n_items = values.size
    ranks = np.arange(1, n_items + 1, dtype=np.float64)
    return float(2.0 * (ranks @ values) / (n_items * total) - (n_items + 1.0) / n_items)


def popularity_lift(
    recommended: np.ndarray,
    item_popularity: np.ndarray,
    profiles: sp.spmatrix | sp.sparray,
    k: int,
) -> float:
    """Popularity lift (Abdollahpouri et al.): relative excess popularity of the slate.

    (mean_u mean popularity of u's top k - mean_u mean popularity of u's profile) / the latter.
    item_popularity: (n_items,), e.g. training interaction counts; profiles: sparse
    (n_users, n_items) histories, nonzero = in the profile. Users whose list or profile is
    empty are left out of both means. NaN when no user remains or profiles have zero popularity.
    """
    popularity = np.asarray(item_popularity, dtype=np.float64)
    if popularity.ndim != 1:
        raise ValueError(f"item_popularity must be 1-D (n_items,), got shape {popularity.shape}")
    slate = slate_matrix(recommended, popularity.size, k)
    history = _binary_profiles(profiles, slate.shape)
    n_listed, n_profile = _row_sums(slate), _row_sums(history)
    kept = (n_listed > 0) & (n_profile > 0)
    if not kept.any():
        return float("nan")
    slate_pop = (slate @ popularity)[kept] / n_listed[kept]
    profile_pop = (history @ popularity)[kept] / n_profile[kept]
    baseline = profile_pop.mean()
    if baseline == 0:
        return float("nan")
    return float((slate_pop.mean() - baseline) / baseline)


def calibration_kl(
    recommended: np.ndarray,
    item_categories: np.ndarray | sp.spmatrix,
    profiles: sp.spmatrix | sp.sparray,
    k: int,
    alpha: float = 0.01,
) -> float:
    """Steck (RecSys 2018) miscalibration: mean over users of KL(p(.|u) || q~(.|u)).

    item_categories: (n_items, C) non-negative; each row is rescaled to sum 1, and items whose
    row sums to 0 take no part. p(c|u) is the mean category distribution over the profile's
    items; q(c|u) the mean over the top-k items, weighted uniformly over the list (Steck also
    allows rank weights); q~ = (1 - alpha) q + alpha p keeps the KL finite. The KL sums over
    categories with p > 0. Users without a categorised item in both profile and list are
    skipped; NaN when none remain. 0 means the slate mirrors the profile's category mix.
    """
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must lie in (0, 1], got {alpha}")
    categories = (
        sp.csr_matrix(item_categories, dtype=np.float64)
        if sp.issparse(item_categories)
        else np.asarray(item_categories, dtype=np.float64)
    )
    if categories.ndim != 2:
        raise ValueError(f"item_categories must be 2-D (n_items, C), got {categories.shape}")
    if categories.min() < 0:
        raise ValueError("item_categories must be non-negative")
    mass = _row_sums(categories)
    categorised = mass > 0
    distributions = sp.diags(np.divide(1.0, mass, out=np.zeros_like(mass), where=categorised))
    distributions = distributions @ categories
    slate = slate_matrix(recommended, categories.shape[0], k)
    history = _binary_profiles(profiles, slate.shape)
    weight = categorised.astype(np.float64)
    n_listed, n_profile = slate @ weight, history @ weight
    kept = (n_listed > 0) & (n_profile > 0)
    if not kept.any():
        return float("nan")
    p = _dense(history[kept] @ distributions) / n_profile[kept, None]
    q = _dense(slate[kept] @ distributions) / n_listed[kept, None]
    q_smoothed = (1.0 - alpha) * q + alpha * p
    positive = p > 0
    terms = np.zeros_like(p)
    terms[positive] = p[positive] * np.log(p[positive] / q_smoothed[positive])
    return float(terms.sum(axis=1).mean())


def homogenization(
    recommended: np.ndarray, k: int, max_users: int = 2000, seed: int = 0
) -> float:
    """Mean Jaccard similarity of the top-k sets over all pairs of distinct users, in [0, 1].

    High values mean everyone is shown the same items. Users with an empty list have no set and
    are left out. Above max_users remaining users, the mean is over the pairs of a random subset
    of max_users users drawn with numpy's default_rng(seed), which keeps the
    (max_users x max_users) intersection matrix small and the value reproducible.
    Intersections come from one sparse product S S^T. NaN with fewer than 2 users.
    """
    if max_users < 2:
        raise ValueError(f"max_users must be >= 2, got {max_users}")
    top = check_recommended(recommended, _NO_ITEM_LIMIT, k)
    n_items = int(top.max()) + 1 if top.size else 0
    slate = slate_matrix(top, n_items, k)
    users = np.flatnonzero(_row_sums(slate) > 0)
    if users.size > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, size=max_users, replace=False))
    if users.size < 2:
        return float("nan")
    slate = slate[users]
    sizes = _row_sums(slate)
    overlap = sp.triu(slate @ slate.T, k=1).tocoo()
    union = sizes[overlap.row] + sizes[overlap.col] - overlap.data
    n_pairs = users.size * (users.size - 1) / 2.0
    return float((overlap.data / union).sum() / n_pairs)


def item_category_matrix(genres: list[list[str]]) -> tuple[np.ndarray, list[str]]:
    """Row-normalised (n_items, C) category matrix and the sorted category names.

    Item i spreads weight 1 evenly over its distinct genres; an item without genres gets a zero
    row (ignored by :func:`calibration_kl`).
    """
    names = sorted({genre for item in genres for genre in item})
    column = {name: j for j, name in enumerate(names)}
    matrix = np.zeros((len(genres), len(names)), dtype=np.float64)
    for i, item in enumerate(genres):
        distinct = set(item)
        for genre in distinct:
            matrix[i, column[genre]] = 1.0 / len(distinct)
    return matrix, names
