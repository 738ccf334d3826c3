"""Exact top-K from IVF cells, proven by their bounds: exhaustive scoring's answer, sublinear work.

For every item, s(u, i) <= max_m <y_um, x_i> (attention is a convex combination over the
unmuted personas, `PersonaScorer.upper_bounds`) <= max_m <y'_um, x'_i> <= max_m U_m(cell(i)),
with x', y' and the cell bound U from `retrieval.cells`. Per batch of users:

1. every cell's bound U(c) = max over unmuted personas;
2. the `first_cells` cells of largest U are scanned: their items' bounds <y', x'> are computed,
   the best `candidates` per user are rescored exactly (`PersonaScorer.scores`), and t, the
   K-th best rescored score, is a lower bound on the final K-th score (-inf if fewer than K);
3. every cell with U(c) >= t - margin is scanned, and every item there with a bound
   >= t - margin is rescored exactly;
4. the top-K of all rescored items is the answer.

An item left out has a bound below t - margin <= (final K-th score) - margin, so its score is
strictly below the K-th: the answer is exhaustive scoring's top-K set (its order may differ
from the catalog-wide computation only between items whose float32 scores are within rounding,
up to 4e-6 measured; true ties go to the lower item index in both). No list is widened and nothing falls back: exact by
construction, for every index built this way.

Floating point: bounds and scores are float32 sums of products; each carries a relative error
of at most about (terms x 6e-8) of the magnitudes summed. The margin is
tolerance * (1 + |t| + max_m |y'_um| max_i |x'_i|), with tolerance 1e-4 covering sums of up to
about 1,000 terms (assuming scores are not cancellations of terms more than 100x larger).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys_pref.models.persona.scorer import ControlWeights, PersonaScorer
from recsys_pref.models.persona.state import PersonaState
from recsys_pref.retrieval.cells import CellBounds


def exact_ivf_top_k(
    cells: CellBounds,
    bound_queries: np.ndarray,
    scorer: PersonaScorer,
    state: PersonaState,
    k: int,
    exclude: sp.csr_matrix | None,
    control: ControlWeights | None,
    first_cells: int,
    candidates: int,
    tolerance: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Exact top-k of a batch of B users (module docstring).

    bound_queries: (B, M, D) the users' persona queries in the bound space; exclude (B,
    n_items) or None. Returns ids (B, k) int64 and scores (B, k) float32 (padded with -1 /
    -inf), and per user the items rescored exactly, the items whose bound was computed and the
    cells scanned (B,) int64 each.
    """
    n_users = len(state)
    queries = _unmuted_copies(bound_queries, _muted(scorer, state, control))  # (B, M, D)
    bounds = cells.cell_bounds(queries).max(axis=1)  # (B, C)
    scale = np.linalg.norm(queries, axis=2).max(axis=1) * cells.max_norm

    first = np.argpartition(-bounds, min(first_cells, cells.n_cells) - 1, axis=1)[:, :first_cells]  # (B, c0)
    first_mask = np.zeros_like(bounds, dtype=bool)
    np.put_along_axis(first_mask, first, True, axis=1)
    seed = [_best_bounded(cells, queries[user], first[user], candidates) for user in range(n_users)]
    seed_ids, seed_scores = _rescore(scorer, state, control, exclude, seed)
    threshold = _kth(seed_scores, k)  # (B,), t
    bar = threshold - tolerance * (1 + np.abs(np.where(np.isfinite(threshold), threshold, 0)) + scale)

    scan_mask = bounds >= bar[:, None]
    users, items, _ = _scan(cells, queries, scan_mask, bar)
    found = [np.union1d(seed_ids[user][seed_ids[user] >= 0], items[users == user]) for user in range(n_users)]
    final_ids, final_scores = _rescore(scorer, state, control, exclude, found)
    ids, scores = _top(final_ids, final_scores, k)
    rescored = np.array([len(row) for row in found], np.int64) + np.array([len(row) for row in seed], np.int64)
    scanned_cells = (scan_mask | first_mask).sum(axis=1)
    scanned_items = (scan_mask | first_mask).astype(np.int64) @ cells.sizes
    return ids, scores, rescored, scanned_items, scanned_cells.astype(np.int64)


def _muted(scorer: PersonaScorer, state: PersonaState, control: ControlWeights | None) -> np.ndarray:
    """(B, M) True where the user muted persona m: its upper bound is -inf (the scorer's rule)."""
    probe = np.zeros((*state.prior_logits.shape, 1), np.int64)
    return ~np.isfinite(scorer.upper_bounds(state, probe, control)[:, :, 0])


def _unmuted_copies(queries: np.ndarray, muted: np.ndarray) -> np.ndarray:
    """Each muted persona's query replaced by one of the same user's unmuted ones, so that a max
    over personas is the max over the unmuted personas (B, M, D)."""
    if not muted.any():
        return queries
    keep = np.argmax(~muted, axis=1)  # (B,): the first unmuted persona
    replaced = queries.copy()
    rows, personas = np.nonzero(muted)
    replaced[rows, personas] = queries[rows, keep[rows]]
    return replaced


def _scan(cells: CellBounds, queries: np.ndarray, mask: np.ndarray, bar: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bounds max_m <y'_um, x'_i> of the items of every cell c where mask[u, c], kept where
    they reach bar[u]: (user, item, bound) triples, cell by cell (one matrix product per cell
    for all the users that scan it)."""
    n_users, n_personas, dim = queries.shape
    users, items, values = [], [], []
    for cell in np.flatnonzero(mask.any(axis=0)):
        scanning = np.flatnonzero(mask[:, cell])
        ids, vectors = cells.members(int(cell))
        bound = (queries[scanning].reshape(-1, dim) @ vectors.T).reshape(len(scanning), n_personas, -1).max(axis=1)
        row, column = np.nonzero(bound >= bar[scanning, None])
        users.append(scanning[row])
        items.append(ids[column])
        values.append(bound[row, column])
    if not users:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
    return np.concatenate(users), np.concatenate(items), np.concatenate(values)


def _best_bounded(cells: CellBounds, queries: np.ndarray, first: np.ndarray, count: int) -> np.ndarray:
    """The `count` items of largest bound max_m <y'_m, x'> (queries (M, D)) in cells `first`."""
    ids, vectors = zip(*(cells.members(int(cell)) for cell in first))
    members = np.concatenate(ids)
    bound = (np.concatenate(vectors) @ queries.T).max(axis=1)
    if len(members) <= count:
        return members
    return members[np.argpartition(-bound, count - 1)[:count]]


def _rescore(scorer: PersonaScorer, state: PersonaState, control: ControlWeights | None,
             exclude: sp.csr_matrix | None, found: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Exact scores of each user's items (ascending ids, excluded ones dropped): ids (B, L)
    padded with -1 and scores (B, L) float32 padded with -inf."""
    rows = [np.setdiff1d(row, exclude[user].indices) if exclude is not None else np.unique(row)
            for user, row in enumerate(found)]
    width = max((len(row) for row in rows), default=0)
    ids = np.full((len(rows), max(width, 1)), -1, np.int64)
    for user, row in enumerate(rows):
        ids[user, : len(row)] = row
    scores = scorer.scores(state, np.maximum(ids, 0), control)
    return ids, np.where(ids >= 0, scores, -np.inf).astype(np.float32)


def _kth(scores: np.ndarray, k: int) -> np.ndarray:
    """The k-th largest score per row (B,), -inf where a row has fewer than k finite scores."""
    if scores.shape[1] < k:
        return np.full(len(scores), -np.inf)
    return -np.partition(-scores, k - 1, axis=1)[:, k - 1].astype(np.float64)


def _top(ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k per row of (ids ascending, scores), ties to the lower id; padded with -1 / -inf."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top_scores = np.take_along_axis(scores, order, axis=1)
    top_ids = np.where(np.isfinite(top_scores), np.take_along_axis(ids, order, axis=1), -1)
    pad = k - top_ids.shape[1]
    if pad > 0:
        top_ids = np.pad(top_ids, ((0, 0), (0, pad)), constant_values=-1)
        top_scores = np.pad(top_scores, ((0, 0), (0, pad)), constant_values=-np.inf)
    return top_ids, top_scores.astype(np.float32)
