"""Exact top-K by a norm bound: items in decreasing embedding norm, each user scores a prefix.

For every item, by Cauchy-Schwarz and because attention is a convex combination over personas,

    s(u, i) <= max_m rho_um(i) + b_i = max_m <q_um, e_i> + b_i <= Q_u |e_i| + b_i,   Q_u = max_m |q_um|.

With the items sorted by |e_i|, largest first, every item at position p or later has a bound
of at most Q_u |e_(p)| + max_{p' >= p} b_(p'), which never increases with p. So, per user:

1. the first `seed` items of the order are scored exactly (`PersonaScorer`, on that part of
   the catalog); t, their K-th best score among non-excluded items, is a lower bound on the
   final K-th score (-inf when fewer than K);
2. the user's prefix ends at the first position whose bound is below t - margin: no item after
   it can enter the top-K;
3. the prefix's items are scored exactly (users sorted by prefix length and served a block at
   a time, each block one catalog-wide product over the block's longest prefix) and their
   top-K is the answer: exhaustive scoring's top-K, ties to the lower item index.

Exact by construction, with the float32 margin of `retrieval.exact_ivf`. It prunes when item
norms are spread (on the planted 100k catalog of `bench scale --models batch` a user's prefix
is about 1% of the items) and not at all when every item has about the same norm; users whose
prefix would exceed `max_share` of the catalog are left to the caller (the candidate index).

The same order finds each persona's own top items among a subset of items (rho_um(i) + b_i,
the ranking persona labels read, explain.labels): `PersonaTopItems`, each persona with its own
bound |q_um| |e_i| + b_i and prefix (on that catalog, for the top 50 of 24.8k eligible items,
a median prefix of about 2,900 items).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from recsys_pref.models.persona.scorer import SCORE_FLOATS, ControlWeights, PersonaScorer, SharedSide
from recsys_pref.models.persona.state import PersonaState

SEED_ITEMS = 512  # items of largest norm scored for every user to set the first threshold (top-K)
PERSONA_SEED_ITEMS = 1024  # the same for each persona's top items (50 of them: a longer head pays)
MAX_SHARE = 0.1  # users whose prefix exceeds this share of the catalog are left to the index
BLOCK_USERS = 256  # users whose prefixes are scored together (sorted by prefix length)


@dataclass(frozen=True)
class NormOrder:
    """Items (a subset of the catalog, or all of it) by decreasing embedding norm.

    items: (n,) item indices, largest |e_i| first (equal norms: lower index first); norms: (n,)
    float64 |e_i| in that order; bias_after: (n + 1,) float64, the largest bias of the items
    from each position on (-inf after the last)."""

    items: np.ndarray
    norms: np.ndarray
    bias_after: np.ndarray

    @classmethod
    def of(cls, shared: SharedSide, subset: np.ndarray | None = None) -> "NormOrder":
        """The order of every item, or of the items where the (n_items,) bool `subset` holds."""
        ids = np.arange(shared.n_items) if subset is None else np.flatnonzero(subset)
        norms = np.linalg.norm(shared.item_embeddings[ids].astype(np.float64), axis=1)
        order = np.argsort(-norms, kind="stable")
        bias = shared.item_bias[ids[order]].astype(np.float64)
        bias_after = np.append(np.maximum.accumulate(bias[::-1])[::-1], -np.inf)
        return cls(ids[order], norms[order], bias_after)

    def __len__(self) -> int:
        return len(self.items)

    def prefix_lengths(self, query_norms: np.ndarray, bars: np.ndarray) -> np.ndarray:
        """(R,) int64: for each query norm Q and bar, the shortest prefix after which every
        item's bound Q |e_i| + b_i is below the bar (the whole order when the bar is -inf)."""
        n = len(self)
        low, high = np.zeros(len(bars), np.int64), np.full(len(bars), n, np.int64)
        while (low < high).any():  # binary search: the bound never increases along the order
            middle = (low + high) // 2
            position = np.minimum(middle, n - 1)
            below = query_norms * self.norms[position] + self.bias_after[middle] < bars
            active = low < high
            high, low = np.where(active & below, middle, high), np.where(active & ~below, middle + 1, low)
        return low

    def prefix_side(self, shared: SharedSide, length: int) -> tuple[np.ndarray, SharedSide]:
        """The first `length` items of the order in ascending index order (so that ties go to
        the lower index), and the shared side restricted to them."""
        items = np.sort(self.items[:length])
        side = SharedSide(shared.item_embeddings[items], shared.item_bias[items], shared.bases, shared.temperature)
        side.__dict__["rewards"] = shared.rewards[items]  # r(i) gathered from the catalog's: same numbers, no recompute
        return items, side


def margins(scorer: PersonaScorer, queries: np.ndarray, thresholds: np.ndarray, tolerance: float) -> np.ndarray:
    """thresholds minus the float32 safety margin tolerance * (1 + |t| + max_m |[q_um, 1]| max_i
    |[e_i, b_i]|) (retrieval.exact_ivf); -inf where the threshold is -inf. queries (R, M, d)."""
    largest_query = np.sqrt(np.einsum("rmd,rmd->rm", queries, queries) + 1.0).max(axis=1)
    scale = largest_query * scorer.shared.largest_item_norm
    finite = np.isfinite(thresholds)
    return np.where(finite, thresholds - tolerance * (1 + np.abs(np.where(finite, thresholds, 0)) + scale), -np.inf)


def _prefix_top_k(order: NormOrder, scorer: PersonaScorer, state: PersonaState, k: int,
                  exclude: sp.csr_matrix | None, control: ControlWeights | None, length: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of the users over the order's first `length` items: ids (n, k) int64 in the
    catalog's indices and scores (n, k) float32, padded with -1 / -inf."""
    items, side = order.prefix_side(scorer.shared, length)
    positions, scores = PersonaScorer(side).top_k(state, k, None if exclude is None else exclude[:, items], control)
    return np.where(positions >= 0, items[np.maximum(positions, 0)], -1), scores


def norm_order_top_k(
    order: NormOrder, scorer: PersonaScorer, state: PersonaState, k: int, exclude: sp.csr_matrix | None = None,
    control: ControlWeights | None = None, tolerance: float = 1e-4, seed: int = SEED_ITEMS,
    max_share: float = MAX_SHARE, block_users: int = BLOCK_USERS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Exact top-k through the norm order (module docstring), `order` over the whole catalog.

    Returns ids (n, k) int64 and scores (n, k) float32 (padded with -1 / -inf; rows of users
    not served are padding), served (n,) bool: the users whose prefix was at most `max_share`
    of the catalog (their answers are exact), and the prefix lengths (n,) int64 (items scored)."""
    if len(order) != scorer.shared.n_items:
        raise ValueError(f"the norm order holds {len(order)} items, the model {scorer.shared.n_items}")
    n = len(state)
    head = min(seed, len(order))
    ids, scores = _prefix_top_k(order, scorer, state, k, exclude, control, head)
    queries = scorer.queries(state, control).astype(np.float64)  # (n, M, d)
    query_norms = np.linalg.norm(queries, axis=2).max(axis=1)
    kth = scores[:, k - 1].astype(np.float64) if k <= head else np.full(n, -np.inf)
    lengths = np.maximum(order.prefix_lengths(query_norms, margins(scorer, queries, kth, tolerance)), head)
    served = lengths <= max(head, max_share * len(order))
    longer = np.flatnonzero(served & (lengths > head))
    ids[~served], scores[~served] = -1, -np.inf
    longer = longer[np.argsort(lengths[longer], kind="stable")]
    for start in range(0, len(longer), block_users):
        users = longer[start : start + block_users]
        ids[users], scores[users] = _prefix_top_k(
            order, scorer, _rows(state, users), k,
            None if exclude is None else exclude[users], None if control is None else control.of_users(users),
            int(lengths[users].max()))
    return ids, scores, served, lengths


@dataclass(frozen=True)
class PersonaTopItems:
    """Each persona's own top items, rho_um(i) + b_i (`PersonaScorer.persona_scores`), among
    the items of `order` (e.g. the items labels may use), through the norm order: what
    explain.labels.describe_personas reads labels from, without scoring the whole catalog for
    every user. Exact up to ties at the n_top-th value (any of the tied items, as in
    explain.labels); a persona's prefix grows to the whole subset when its bound prunes nothing."""

    scorer: PersonaScorer
    order: NormOrder
    tolerance: float = 1e-4
    seed: int = PERSONA_SEED_ITEMS
    block_users: int = BLOCK_USERS  # persona rows here

    def __call__(self, state: PersonaState, n_top: int) -> np.ndarray:
        """(n, M, min(n_top, subset size)) item indices, best first."""
        n, n_personas, n_bases = state.coefficients.shape
        # each persona on its own, as a one-persona state: its own bound and prefix (R = n M rows)
        personas = PersonaState(state.coefficients.reshape(-1, 1, n_bases), state.prior_logits.reshape(-1, 1))
        n_top = min(n_top, len(self.order))
        head = min(max(self.seed, n_top), len(self.order))
        top = np.empty((len(personas), 1, n_top), np.int64)
        values = np.empty((len(personas), 1, n_top), np.float32)
        block = max(1, SCORE_FLOATS // head)  # rows whose head scores are held at once
        for start in range(0, len(personas), block):
            rows = slice(start, start + block)
            top[rows], values[rows] = self._prefix(_rows(personas, rows), head, n_top)
        queries = self.scorer.queries(personas).astype(np.float64)  # (R, 1, d)
        bars = margins(self.scorer, queries, values[:, 0, -1].astype(np.float64), self.tolerance)
        lengths = self.order.prefix_lengths(np.linalg.norm(queries[:, 0], axis=1), bars)
        longer = np.flatnonzero(lengths > head)
        longer = longer[np.argsort(lengths[longer], kind="stable")]
        start = 0
        while start < len(longer):  # blocks of rows of similar prefix length, SCORE_FLOATS at most
            longest = int(lengths[longer[min(start + self.block_users, len(longer)) - 1]])  # sorted: the block's last
            size = max(1, min(self.block_users, SCORE_FLOATS // longest))
            rows_now, start = longer[start : start + size], start + size
            top[rows_now], _ = self._prefix(_rows(personas, rows_now), int(lengths[rows_now].max()), n_top)
        return top.reshape(n, n_personas, n_top)

    def _prefix(self, state: PersonaState, length: int, n_top: int) -> tuple[np.ndarray, np.ndarray]:
        """Top n_top items per persona among the order's first `length`: ids and values (n, M, n_top)."""
        items, side = self.order.prefix_side(self.scorer.shared, length)
        values = torch.from_numpy(PersonaScorer(side).persona_scores(state))  # (n, M, length), items ascending
        best = torch.topk(values, n_top, dim=2)  # best first (ties at the cut: any of them, as explain.labels)
        return items[best.indices.numpy()], best.values.numpy()


def _rows(state: PersonaState, rows: slice | np.ndarray) -> PersonaState:
    return PersonaState(state.coefficients[rows], state.prior_logits[rows])
