"""Top-K for the persona model through a candidate index; certified only where it is proven.

The score is s(u, i) = sum_m alpha_um(i) rho_um(i) + b_i with attention alpha a convex
combination over personas, so

    s(u, i) <= max_m rho_um(i) + b_i = max_m <y_um, x_i>          (x_i = [e_i, b_i], y_um = [q_um, 1])

(an average never exceeds its largest term). Candidate generation asks the index for each
persona's top-N by <y_um, x_i>, merges the M lists, drops excluded items (already seen,
filtered) and rescores the rest exactly with attention (`PersonaScorer.scores`). Let t_m be the
lowest bound <y_um, x_i> in persona m's list (its N-th score, computed exactly from the
catalog, not taken from the index): every item outside all lists has s(u, i) <= T = max_m t_m.
So when the K-th best rescored candidate scores above T, no item outside the lists can enter
the top-K and the result *is* exhaustive scoring's top-K set. Within it, scores are the
scorer's for the gathered candidates, which may differ from the catalog-wide computation in
the last float32 bits (measured: up to 4e-6), so two items closer than that may be ordered
differently than exhaustive scoring orders them; true ties go to the lower item index in both. Otherwise N is doubled and the user retried; past
`max_candidates` the user falls back to exhaustive scoring, so every result is exact.

Floating point: the index computes <y, x> in float32 in its own order, the rescoring in
another; each result is off by at most about (terms x 6e-8) of the magnitudes summed, which
|y| |x| bounds (Cauchy-Schwarz), not |T| (a bound near 0 can be a sum of large terms that
cancel). So the comparison demands a margin of `tolerance * (1 + |T| + max_m |y_um| max_i |x_i|)`
above T, as `retrieval.exact_ivf` does; candidates that close to the bound are not certified but
widened (a sound, slightly conservative test).

The bound assumes each list *is* persona m's true top-N, which only an exact index ("Flat")
guarantees. An approximate index (HNSW, IVF, PQ) may miss items of the true top-N, and then
the test proves nothing (HNSW at 1M items passed it for every user with a third of the top-10
slots wrong). So with an approximate index the same test only decides when the lists are long
enough, no user is certified, and the result says it is approximate (`RetrievalResult.exact`
is False except for users scored exhaustively); its recall against exhaustive scoring is what
`recsys-pref bench retrieval` measures. An "ExactIVF" index is answered by
`retrieval.exact_ivf`, exact by its cell bounds for every user.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recsys_pref.models.persona.scorer import ControlWeights, PersonaScorer
from recsys_pref.models.persona.state import PersonaState
from recsys_pref.retrieval.exact_ivf import exact_ivf_top_k
from recsys_pref.retrieval.index import CandidateIndex

SCORE_FLOATS = 1 << 24  # floats gathered per batch of rescoring (batch x M x N x d): 64 MB


@dataclass(frozen=True)
class CertifiedConfig:
    """candidates: N, each persona's first list length. 64 certifies most users of a trained
        model at K = 10 (BENCHMARKS.md, "Retrieval"); larger costs rescoring for everyone.
    max_candidates: N beyond which an uncertified user falls back to exhaustive scoring.
    tolerance: relative float32 safety margin of the certificate (see the module docstring).
    batch_users: users searched and rescored together; fewer when lists are long, so that a
        batch gathers at most SCORE_FLOATS floats (batch x M x N x d).
    first_cells, first_candidates: "ExactIVF": the first_candidates best-bounded items of
        the first_cells most promising cells are rescored to set the first threshold
        (`retrieval.exact_ivf`); a higher threshold leaves fewer cells to scan.
    ivf_batch_users: "ExactIVF": users scanned together (one matrix product per cell for all
        of them that need it).
    """

    candidates: int = 64
    max_candidates: int = 4096
    tolerance: float = 1e-4
    batch_users: int = 256
    first_cells: int = 32
    first_candidates: int = 256
    ivf_batch_users: int = 512

    def __post_init__(self) -> None:
        if (self.candidates < 1 or self.max_candidates < self.candidates or self.batch_users < 1
                or min(self.first_cells, self.first_candidates, self.ivf_batch_users) < 1):
            raise ValueError(f"CertifiedConfig needs 1 <= candidates <= max_candidates and batch_users >= 1, got {self}")
        if not self.tolerance >= 0:
            raise ValueError(f"tolerance must be >= 0, got {self.tolerance}")


@dataclass(frozen=True)
class RetrievalResult:
    """Top-K per user. ids (n, K) int64 and scores (n, K) float32, padded with -1 / -inf;
    certified (n,): proven exact by a bound over an exact index (never with an approximate
    one); fallback (n,): scored exhaustively instead; scored (n,): items each user had scored
    exactly, over all rounds; scanned and cells (n,): items whose bound was computed and cells
    scanned ("ExactIVF" only, else None)."""

    ids: np.ndarray
    scores: np.ndarray
    certified: np.ndarray
    fallback: np.ndarray
    scored: np.ndarray
    scanned: np.ndarray | None = None
    cells: np.ndarray | None = None

    @property
    def exact(self) -> np.ndarray:
        """(n,) whether each user's answer is proven equal to exhaustive scoring's."""
        return self.certified | self.fallback

    @property
    def approximate(self) -> bool:
        """Whether any user's answer may differ from exhaustive scoring's."""
        return not bool(self.exact.all())

    @property
    def certified_share(self) -> float:
        return float(self.certified.mean()) if len(self.certified) else float("nan")


def certified_top_k(
    index: CandidateIndex,
    scorer: PersonaScorer,
    state: PersonaState,
    k: int,
    exclude: sp.csr_matrix | None = None,
    config: CertifiedConfig | None = None,
    control: ControlWeights | None = None,
) -> RetrievalResult:
    """Top-k per user of `state` (under `control`) from the index's persona lists, certified
    or widened (see the module docstring), or from an "ExactIVF" index's cells
    (`retrieval.exact_ivf`). exclude: (n, n_items) sparse, its nonzeros never returned."""
    config = config or CertifiedConfig()
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    n_items = scorer.shared.n_items
    if index.n_items != n_items:
        raise ValueError(f"the index holds {index.n_items} items, the model {n_items}")
    exclude = _check_exclude(exclude, len(state), n_items)
    if index.cells is not None:
        return _exact_ivf(index, scorer, state, k, exclude, config, control)
    n = len(state)
    queries = scorer.queries(state, control)  # (n, M, d)
    margins = config.tolerance * _product_scales(scorer, queries)  # (n,)
    ids, scores = np.full((n, k), -1, np.int64), np.full((n, k), -np.inf, np.float32)
    certified, scored = np.zeros(n, bool), np.zeros(n, np.int64)
    pending, length = np.arange(n), min(config.candidates, n_items)
    while len(pending):
        done = np.zeros(len(pending), bool)
        batch_users = max(1, min(config.batch_users, SCORE_FLOATS // (queries.shape[1] * length * queries.shape[2])))
        for start in range(0, len(pending), batch_users):
            users = pending[start : start + batch_users]
            batch = _certify(index, scorer, _rows(state, users), queries[users], k, length,
                             None if exclude is None else exclude[users], config.tolerance, margins[users],
                             None if control is None else control.of_users(users))
            ok = batch.certified
            ids[users[ok]], scores[users[ok]], certified[users[ok]] = batch.ids[ok], batch.scores[ok], index.exact
            scored[users] += batch.scored
            done[start : start + len(users)] = ok
        pending = pending[~done]
        if length >= config.max_candidates or length >= n_items:
            break
        length = min(2 * length, config.max_candidates, n_items)
    fallback = np.zeros(n, bool)
    if len(pending):
        fallback[pending] = True
        ids[pending], scores[pending] = scorer.top_k(
            _rows(state, pending), k, None if exclude is None else exclude[pending],
            None if control is None else control.of_users(pending))
        scored[pending] += n_items
    return RetrievalResult(ids, scores, certified, fallback, scored)


def _exact_ivf(index: CandidateIndex, scorer: PersonaScorer, state: PersonaState, k: int,
               exclude: sp.csr_matrix | None, config: CertifiedConfig, control: ControlWeights | None
               ) -> RetrievalResult:
    """Every user through `exact_ivf_top_k`, `config.ivf_batch_users` at a time: all certified."""
    assert index.cells is not None
    n = len(state)
    queries = index.bound_queries(scorer.queries(state, control))  # (n, M, D)
    parts = []
    for start in range(0, n, config.ivf_batch_users):
        users = np.arange(start, min(start + config.ivf_batch_users, n))
        parts.append(exact_ivf_top_k(
            index.cells, queries[users], scorer, _rows(state, users), k,
            None if exclude is None else exclude[users], None if control is None else control.of_users(users),
            config.first_cells, config.first_candidates, config.tolerance))
    ids, scores, scored, scanned, cells = (np.concatenate(column) for column in zip(*parts))
    return RetrievalResult(ids, scores, np.ones(n, bool), np.zeros(n, bool), scored, scanned, cells)


def _certify(
    index: CandidateIndex,
    scorer: PersonaScorer,
    state: PersonaState,
    queries: np.ndarray,
    k: int,
    length: int,
    exclude: sp.csr_matrix | None,
    tolerance: float,
    margins: np.ndarray,
    control: ControlWeights | None,
) -> RetrievalResult:
    """One round for a batch of B users: lists of `length` per persona, exact rescoring of
    their merged non-excluded items, and the certificate. margins (B,): tolerance times each
    user's bound on the magnitudes of <y_um, x_i> (module docstring)."""
    n_users, n_personas, dim = queries.shape
    lists = index.search(queries.reshape(-1, dim), length).reshape(n_users, n_personas, length)
    threshold = _list_thresholds(scorer.upper_bounds(state, lists, control), lists, scorer.shared.n_items).max(axis=1)  # (B,): T
    candidates = np.sort(lists.reshape(n_users, -1), axis=1)  # (B, M*N), ascending: ties -> lower id
    keep = candidates >= 0
    keep[:, 1:] &= candidates[:, 1:] != candidates[:, :-1]
    if exclude is not None:
        keep &= ~_excluded(candidates, exclude)
    rescored = scorer.scores(state, np.where(keep, candidates, 0), control)
    rescored[~keep] = -np.inf
    order = np.argsort(-rescored, axis=1, kind="stable")[:, :k]
    top_scores = np.take_along_axis(rescored, order, axis=1)
    top_ids = np.where(np.isfinite(top_scores), np.take_along_axis(candidates, order, axis=1), -1)
    if top_ids.shape[1] < k:
        top_ids = np.pad(top_ids, ((0, 0), (0, k - top_ids.shape[1])), constant_values=-1)
        top_scores = np.pad(top_scores, ((0, 0), (0, k - top_scores.shape[1])), constant_values=-np.inf)
    n_kept = keep.sum(axis=1)
    with np.errstate(invalid="ignore"):  # inf - inf where T is infinite
        bar = np.where(np.isfinite(threshold), threshold + tolerance * (1 + np.abs(threshold)) + margins, threshold)
    exact = np.where(n_kept >= k, top_scores[:, k - 1] > bar, threshold == -np.inf)
    return RetrievalResult(top_ids, top_scores.astype(np.float32), exact, np.zeros(n_users, bool), n_kept)


def _product_scales(scorer: PersonaScorer, queries: np.ndarray) -> np.ndarray:
    """max_m |y_um| max_i |x_i| per user (n,), with y_um = [q_um, 1] from queries (n, M, d)
    and x_i = [e_i, b_i]: a bound on every |<y_um, x_i>| and on the terms that sum to it."""
    largest_query = np.sqrt(np.einsum("umd,umd->um", queries, queries) + 1.0).max(axis=1)
    return largest_query * scorer.shared.largest_item_norm


def _list_thresholds(bounds: np.ndarray, lists: np.ndarray, n_items: int) -> np.ndarray:
    """t_m per user and persona (B, M) from the lists' bounds (B, M, N) of the items `lists`
    (B, M, N), -1 where none: the lowest found bound; -inf when a list holds the whole catalog
    (nothing lies outside it) or the persona is muted (every bound -inf: it bounds nothing),
    +inf when the list holds nothing (no bound known)."""
    listed = (lists >= 0).sum(axis=2)
    finite = np.isfinite(bounds)
    lowest = np.where(finite, bounds, np.inf).min(axis=2)
    muted = (listed > 0) & ~finite.any(axis=2)
    return np.where((listed >= n_items) | muted, -np.inf, lowest)


def _excluded(candidates: np.ndarray, exclude: sp.csr_matrix) -> np.ndarray:
    """Mask (B, L) of candidates (B, L) that are nonzero in their row of exclude (B, n_items)."""
    n_items = exclude.shape[1]
    excluded_keys = np.repeat(np.arange(exclude.shape[0], dtype=np.int64), np.diff(exclude.indptr)) * n_items
    excluded_keys += exclude.indices
    keys = np.arange(candidates.shape[0], dtype=np.int64)[:, None] * n_items + candidates
    return np.isin(keys, excluded_keys)


def _check_exclude(exclude: sp.spmatrix | None, n_users: int, n_items: int) -> sp.csr_matrix | None:
    if exclude is None:
        return None
    exclude = sp.csr_matrix(exclude)
    if exclude.shape != (n_users, n_items):
        raise ValueError(f"exclude has shape {exclude.shape}, expected (n_users, n_items) = {(n_users, n_items)}")
    exclude.eliminate_zeros()
    return exclude


def _rows(state: PersonaState, users: np.ndarray) -> PersonaState:
    return PersonaState(state.coefficients[users], state.prior_logits[users])
