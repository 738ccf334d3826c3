"""Measures of echo chambers in a feedback loop: homogenization of what people consume
(Chaney et al.), per-user narrowing, population polarization, effective taste clusters and
taste drift. Exposure concentration (Gini) is evaluation.beyond_accuracy.gini.

They read consumption, not slates: a slate never repeats a consumed item (the item leaves the
candidates), so the mean Jaccard between *slates* cannot grow however alike users become
(BENCHMARKS.md, issue 17); the sets of items people have *consumed* can.

Inputs: `consumed` and `histories` are binary (n_users, n_items) sparse matrices (non-zero =
consumed / in the history); `item_categories` (n_items, C) has rows that are distributions over
C categories (genres, planted personas) or all zero (uncategorised: no part in a mix).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def _binary(matrix: sp.spmatrix) -> sp.csr_matrix:
    binary = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
    binary.eliminate_zeros()
    binary.data[:] = 1.0
    return binary


def pair_jaccard(consumed: sp.spmatrix, pairs: np.ndarray) -> float:
    """Mean Jaccard index |A ∩ B| / |A ∪ B| of the consumed sets of each pair of users.

    pairs (P, 2) user indices. A pair where neither user consumed anything has Jaccard 0 (nothing
    shared yet). NaN without pairs. In [0, 1]; 1 = every pair consumed the very same items."""
    pairs = np.asarray(pairs, np.int64)
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        raise ValueError(f"pairs must have shape (P, 2), got {pairs.shape}")
    if not len(pairs):
        return float("nan")
    consumed = sp.csr_matrix(consumed)
    left, right = _binary(consumed[pairs[:, 0]]), _binary(consumed[pairs[:, 1]])  # only the paired rows
    shared = np.asarray(left.multiply(right).sum(axis=1)).ravel()
    union = np.asarray(left.sum(axis=1)).ravel() + np.asarray(right.sum(axis=1)).ravel() - shared
    return float(np.mean(np.divide(shared, union, out=np.zeros_like(shared), where=union > 0)))


def nearest_taste_pairs(tastes: np.ndarray, max_users: int = 2000, seed: int = 0) -> np.ndarray:
    """(P, 2) each user paired with the other user whose taste is most cosine-similar, as Chaney,
    Stewart & Engelhardt (RecSys 2018) pair users to measure homogenization: similar people are
    expected to consume alike, so only the excess over an ideal recommender is the system's doing.

    tastes (n, f): each user's true taste (e.g. utilities over the catalog). Above max_users
    users, a seeded random subset of max_users users (numpy default_rng(seed)) is paired among
    itself, which bounds the (max_users x max_users) similarity matrix."""
    if max_users < 2:
        raise ValueError(f"max_users must be >= 2, got {max_users}")
    n = tastes.shape[0]
    if n < 2:
        raise ValueError(f"pairing needs at least 2 users, got {n}")
    users = np.arange(n) if n <= max_users else np.sort(np.random.default_rng(seed).choice(n, max_users, replace=False))
    centred = tastes[users] - tastes[users].mean(axis=1, keepdims=True)
    unit = centred / np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit.T  # (m, m)
    np.fill_diagonal(similarity, -np.inf)
    return np.stack([users, users[np.argmax(similarity, axis=1)]], axis=1)


def random_pairs(n_users: int, max_pairs: int = 1000, seed: int = 0) -> np.ndarray:
    """(P, 2) disjoint random pairs of distinct users (at most max_pairs, a seeded draw): the
    population-wide pairing, against which homogenization means everyone consuming alike."""
    if n_users < 2:
        raise ValueError(f"pairing needs at least 2 users, got {n_users}")
    order = np.random.default_rng(seed).permutation(n_users)[: 2 * max_pairs]
    half = len(order) // 2
    return np.stack([order[:half], order[half: 2 * half]], axis=1)


def chaney_homogenization(consumed: sp.spmatrix, ideal_consumed: sp.spmatrix, pairs: np.ndarray) -> float:
    """Chaney, Stewart & Engelhardt (RecSys 2018), "How algorithmic confounding in recommendation
    systems increases homogeneity and decreases utility": the mean Jaccard of paired users'
    consumed sets under the recommender minus the same under the ideal recommender (which shows
    each user their own best items), same users and pairs. > 0: the system makes similar people
    consume more alike than their tastes do; it grows with the feedback loop."""
    return pair_jaccard(consumed, pairs) - pair_jaccard(ideal_consumed, pairs)


def consumption_mix(histories: sp.spmatrix, item_categories: np.ndarray) -> np.ndarray:
    """(n, C) each user's category mix: the mean distribution over their categorised items; a
    user with none gets an all-zero row."""
    binary = _binary(histories)
    categorised = (np.asarray(item_categories).sum(axis=1) > 0).astype(np.float64)
    counts = binary @ categorised
    totals = np.asarray(binary @ item_categories)
    return totals / np.maximum(counts, 1.0)[:, None]


def mix_entropy(mix: np.ndarray) -> np.ndarray:
    """(n,) Shannon entropy in nats of each row of mix (n, C), rows summing to 1 (or 0: entropy 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(mix > 0, -mix * np.log(mix), 0.0).sum(axis=1)


def narrowing(start_mix: np.ndarray, current_mix: np.ndarray) -> float:
    """Per-user narrowing (the filter bubble of Pariser; measured as in Nguyen et al., WWW 2014,
    "Exploring the filter bubble", by the diversity of what users consume over time): the mean
    over users of H(start mix) - H(current mix), in nats, for (n, C) mixes of the users' starting
    and current consumption (consumption_mix of the start and of the grown histories, or attention
    mixes over personas). > 0: users' consumption has narrowed since the start. Users whose start
    or current row is all zero are left out; NaN if none remains."""
    if start_mix.shape != current_mix.shape:
        raise ValueError(f"start {start_mix.shape} and current {current_mix.shape} mixes differ")
    kept = (start_mix.sum(axis=1) > 0) & (current_mix.sum(axis=1) > 0)
    if not kept.any():
        return float("nan")
    return float(np.mean(mix_entropy(start_mix[kept]) - mix_entropy(current_mix[kept])))


def group_consumption(consumed: sp.spmatrix, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """(n_groups, n_items) how often each group of users consumed each item; groups (n,) in
    0..n_groups-1 (-1: in no group). Sums over chunks of users add up."""
    groups = np.asarray(groups, np.int64)
    member = groups >= 0
    assignment = sp.csr_matrix((np.ones(int(member.sum())), (groups[member], np.flatnonzero(member))),
                               shape=(n_groups, len(groups)))
    return np.asarray((assignment @ _binary(consumed)).todense())


def polarization(group_counts: np.ndarray) -> float:
    """Population polarization: the mean Jensen-Shannon divergence (base 2, in [0, 1]) between
    every two groups' consumption distributions over items (group_counts (G, n_items), e.g.
    group_consumption with users grouped by their starting taste), as Dandekar, Goel & Lee (PNAS
    2013, "Biased assimilation, homophily, and the dynamics of polarization") measure the
    divergence of groups' opinions. 0: the groups consume alike; 1: disjoint items. Groups that
    consumed nothing are left out; NaN with fewer than two left."""
    counts = np.asarray(group_counts, np.float64)
    totals = counts.sum(axis=1)
    kept = counts[totals > 0] / totals[totals > 0, None]
    if len(kept) < 2:
        return float("nan")
    divergences = []
    for first in range(len(kept)):
        p, q = kept[first][None, :], kept[first + 1:]
        middle = (p + q) / 2.0
        with np.errstate(divide="ignore", invalid="ignore"):
            left = np.where(p > 0, p * np.log2(p / middle), 0.0).sum(axis=1)
            right = np.where(q > 0, q * np.log2(q / middle), 0.0).sum(axis=1)
        divergences.append((left + right) / 2.0)
    return float(np.mean(np.concatenate(divergences)))


def dominant_counts(mix: np.ndarray) -> np.ndarray:
    """(C,) how many users have each category as the largest in their mix (n, C); a tie is split
    evenly among the tied categories; all-zero rows count nowhere. Sums over chunks add up."""
    top = mix.max(axis=1, keepdims=True)
    tied = (mix == top) & (top > 0)
    return (tied / np.maximum(tied.sum(axis=1, keepdims=True), 1)).sum(axis=0)


def effective_clusters(counts: np.ndarray) -> float:
    """The effective number of taste clusters: exp of the entropy of the users' shares over
    their dominant categories (dominant_counts), the Hill number of order 1 (Hill, Ecology 1973;
    Jost, Oikos 2006). C when users spread evenly over C clusters, 1 when all share one: it falls
    as the loop pulls the population into fewer bubbles. NaN when no user counts."""
    counts = np.asarray(counts, np.float64)
    if counts.sum() <= 0:
        return float("nan")
    share = counts[None, :] / counts.sum()
    return float(np.exp(mix_entropy(share)[0]))


def taste_drift(utilities: np.ndarray, initial: np.ndarray) -> np.ndarray:
    """(n,) each user's drift from their initial (or planted) taste: 1 - the Pearson correlation
    of their current and initial true utilities over the catalog (utilities, initial (n, n_items)),
    in [0, 2]; 0 = unchanged. Taste that follows consumption is Chaney et al.'s (RecSys 2018) and
    Jiang et al.'s ("Degenerate feedback loops in recommender systems", AIES 2019) mechanism."""
    current = utilities - utilities.mean(axis=1, keepdims=True)
    start = initial - initial.mean(axis=1, keepdims=True)
    denominator = np.linalg.norm(current, axis=1) * np.linalg.norm(start, axis=1)
    correlation = np.divide((current * start).sum(axis=1), denominator, out=np.ones(len(current)),
                            where=denominator > 0)
    return 1.0 - correlation
