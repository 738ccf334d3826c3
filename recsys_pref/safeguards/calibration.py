"""Calibrated re-ranking (Steck, RecSys 2018): a slate whose mix tracks the user's mix.

For a user with target mix p over categories and a candidate pool with relevance rel(i) and
per-item category distributions q_i, the slate S of size k maximises

    F(S) = (1 - lambda) sum_{i in S} rel(i) - lambda KL(p || q~(S)),
    q(S) = mean_{i in S} q_i,   q~ = (1 - alpha) q + alpha p   (alpha = 0.01 keeps KL finite)

greedily, one slot at a time, as Steck does (F is not submodular in general, so greedy is a
heuristic; it is exact for k = 1 and lambda = 0 returns the relevance ranking). Relevance is
the model's score min-max scaled to [0, 1] over each user's pool, so lambda means the same on
every dataset. Several category systems (personas, shared bases, genres) are calibrated at
once by concatenating their distributions: the KL of a concatenation of distributions is the
sum of the KLs, so each system counts equally.

Category systems (each row a distribution; builders below):
- personas: target = the explanation layer's persona mix (explain.summary.persona_mix),
  item distribution = the attention alpha_um(i) of the user's personas for that item;
- bases: item distribution = softmax over k of r_k(i) standardised over the catalog, target =
  its mean over the user's history (Steck's p(c|u));
- genres: item distribution = its genres, evenly, target = the mean over the history.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp

DEFAULT_ALPHA = 0.01
BLOCK_USERS = 4096  # users per thread of the greedy: smaller calls are not worth a thread


def smoothed_kl(target: np.ndarray, mix: np.ndarray, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """KL(p || (1 - alpha) q + alpha p) over the last axis, summing where p > 0.

    target p (..., C) and mix q (..., C) broadcast together; returns (...) in nats."""
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must lie in (0, 1], got {alpha}")
    p = np.broadcast_to(target, np.broadcast_shapes(target.shape, mix.shape))
    smoothed = (1.0 - alpha) * mix + alpha * p
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p / smoothed), 0.0)
    return terms.sum(axis=-1)


def scaled_relevance(scores: np.ndarray) -> np.ndarray:
    """Scores (n, N) min-max scaled to [0, 1] per row (a constant row becomes all ones)."""
    low, high = scores.min(axis=1, keepdims=True), scores.max(axis=1, keepdims=True)
    spread = np.where(high > low, high - low, 1.0)
    return np.where(high > low, (scores - low) / spread, 1.0)


def calibration_objective(
    relevance: np.ndarray, item_mix: np.ndarray, target: np.ndarray, lam: float, alpha: float = DEFAULT_ALPHA
) -> float:
    """F(S) of one slate: relevance (L,), item_mix (L, C) of its items, target (C,)."""
    return float((1.0 - lam) * relevance.sum() - lam * smoothed_kl(target, item_mix.mean(axis=0), alpha))


def calibrated_rerank(
    relevance: np.ndarray, item_mix: np.ndarray, target: np.ndarray, k: int, lam: float,
    alpha: float = DEFAULT_ALPHA,
) -> np.ndarray:
    """Steck's greedy calibrated slate for n users at once.

    relevance (n, N) of each user's candidate pool (scaled as wanted; see scaled_relevance),
    -inf for unusable candidates; item_mix (n, N, C) the candidates' category distributions;
    target (n, C) the users' mixes; returns (n, min(k, N)) positions into the pool, in the order
    chosen (which is the slate's rank order). Unusable candidates are taken only when nothing
    else is left, and returned as -1.
    """
    n, n_candidates = relevance.shape
    if item_mix.shape[:2] != (n, n_candidates) or target.shape != (n, item_mix.shape[2]):
        raise ValueError(f"shapes do not fit: relevance {relevance.shape}, item_mix {item_mix.shape}, "
                         f"target {target.shape}")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lambda must lie in [0, 1], got {lam}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must lie in (0, 1], got {alpha}")
    workers = min(usable_cores(), max(1, n // BLOCK_USERS))
    if workers == 1:
        return _greedy_slates(relevance, item_mix, target, k, lam, alpha)
    blocks = np.array_split(np.arange(n), workers)  # users are independent: the same slates in any split
    with ThreadPoolExecutor(workers) as pool:  # numpy's loops release the GIL, so blocks use every core
        parts = pool.map(lambda rows: _greedy_slates(relevance[rows], item_mix[rows], target[rows], k, lam, alpha),
                         blocks)
        return np.concatenate(list(parts))


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports one, e.g. Linux)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _greedy_slates(relevance: np.ndarray, item_mix: np.ndarray, target: np.ndarray, k: int, lam: float,
                   alpha: float) -> np.ndarray:
    """calibrated_rerank's greedy for one block of users (its arguments, already checked)."""
    n, n_candidates = relevance.shape
    usable = np.isfinite(relevance)
    gains = np.where(usable, relevance, 0.0)
    mix_sum = np.zeros(target.shape)
    taken = np.zeros((n, n_candidates), bool)
    rows = np.arange(n)
    slate = np.full((n, min(k, n_candidates)), -1, np.int64)
    smoothing = alpha * target[:, None, :]  # (n, 1, C)
    tiny = np.finfo(np.float64).tiny
    smoothed = np.empty(item_mix.shape)  # (n, N, C), reused by every slot
    for slot in range(slate.shape[1]):
        # KL(p || q~) = sum p log p - sum p log q~: the first sum is the same for every candidate
        # of a user, so the greedy step maximises (1 - lam) rel + lam sum_c p_c log q~_c instead
        # (same choice, one log per entry and no (n, N, C) temporaries beyond q~).
        np.add(mix_sum[:, None, :], item_mix, out=smoothed)
        smoothed *= (1.0 - alpha) / (slot + 1)
        smoothed += smoothing
        np.log(np.maximum(smoothed, tiny, out=smoothed), out=smoothed)
        cross = np.einsum("nkc,nc->nk", smoothed, target)  # (n, N): sum_c p_c log q~_c
        objective = (1.0 - lam) * gains + lam * cross
        objective = np.where(usable & ~taken, objective, -np.inf)
        best = np.argmax(objective, axis=1)
        found = np.isfinite(objective[rows, best])
        slate[found, slot] = best[found]
        taken[rows[found], best[found]] = True
        mix_sum[found] += item_mix[rows[found], best[found]]
    return slate


# -- category systems -------------------------------------------------------------------------
def history_mix(histories: sp.spmatrix, item_distributions: np.ndarray) -> np.ndarray:
    """Steck's p(c|u): the mean distribution over each user's history items.

    histories (n, n_items) non-zero = in the history; item_distributions (n_items, C), rows
    summing to 1 or 0 (uncategorised items take no part). Users with no categorised item get
    the catalog's mean distribution."""
    binary = sp.csr_matrix(histories, dtype=np.float64, copy=True)
    binary.data[:] = 1.0
    categorised = (item_distributions.sum(axis=1) > 0).astype(np.float64)
    totals = np.asarray(binary @ item_distributions)
    counts = binary @ categorised
    catalog = item_distributions[categorised > 0].mean(axis=0) if categorised.any() else item_distributions.mean(axis=0)
    return np.where(counts[:, None] > 0, totals / np.maximum(counts, 1.0)[:, None], catalog[None, :])


def base_distributions(rewards: np.ndarray) -> np.ndarray:
    """Items' distributions over the K shared bases: softmax over k of r_k(i) standardised per
    base over the catalog (so a base with a large scale does not take every item).
    rewards (n_items, K) -> (n_items, K), rows summing to 1."""
    spread = rewards.std(axis=0)
    z = (rewards - rewards.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)
