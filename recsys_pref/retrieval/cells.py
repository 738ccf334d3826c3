"""IVF cells with proven upper bounds on every stored item's inner product with a query.

The bound space. A persona query y = [q, 1] and an item x = [e, b] give <y, x> = <q, e> + b,
the persona's reward for the item plus its bias (`retrieval.index`). Given a subspace with
orthonormal basis S (d, r) (from the queries users actually ask, `fit_subspace`), split
q = S S^T q + q_perp and e = S S^T e + e_perp; then <q, e> = <S^T q, S^T e> + <q_perp, e_perp>
and, by Cauchy-Schwarz, <q_perp, e_perp> <= |q_perp| |e_perp|. With

    x' = [S^T e, b, |e_perp|]        y' = [S^T q, 1, |q_perp|]       (r + 2 floats each)

every item satisfies <y, x> <= <y', x'>: one inner product in r + 2 dimensions bounds the
d + 1 dimensional one (`bound_items`, `bound_queries`). When the queries lie near the subspace
(|q_perp| small) the bound is tight. Without a subspace (S = identity) x' = [e, b, 0] and the
bound is the inner product itself.

Cells. The items' x' are clustered (k-means, a FAISS IVF quantizer); cell c holds its members'
x', their mean mu_c and radius r_c = max |x' - mu_c| over its members. For every item of c,
again by Cauchy-Schwarz,

    <y', x'> = <y', mu_c> + <y', x' - mu_c> <= <y', mu_c> + |y'| r_c,

so one number per cell bounds all its items (`CellBounds.cell_bounds`). Means and radii are
always recomputed from the stored members (after adding items too), never trusted from a
file.
"""
from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np


def fit_subspace(queries: np.ndarray, energy: float) -> np.ndarray | None:
    """The smallest orthonormal basis S (d, r) of the queries' (n, d) leading singular
    directions that holds at least `energy` of their squared norm; None when that takes all d
    dimensions (no projection) or there are no queries."""
    queries = np.asarray(queries, dtype=np.float64)
    if queries.ndim != 2 or not len(queries) or energy >= 1:
        return None
    _, singular, directions = np.linalg.svd(queries, full_matrices=False)
    shares = np.cumsum(singular**2) / max(float((singular**2).sum()), np.finfo(float).tiny)
    rank = int(np.searchsorted(shares, energy) + 1)
    return None if rank >= queries.shape[1] else np.ascontiguousarray(directions[:rank].T)


def bound_items(item_embeddings: np.ndarray, item_bias: np.ndarray, subspace: np.ndarray | None) -> np.ndarray:
    """x' = [S^T e, b, |e_perp|] (module docstring): (n, d), (n,) -> (n, r + 2) float32
    (r = d without a subspace). The residual norm is computed in float64."""
    embeddings = np.asarray(item_embeddings, dtype=np.float64)
    projected, residual = _split(embeddings, subspace)
    return np.column_stack([projected, np.asarray(item_bias, np.float64), residual]).astype(np.float32)


def bound_queries(queries: np.ndarray, subspace: np.ndarray | None) -> np.ndarray:
    """y' = [S^T q, 1, |q_perp|] for persona queries q (..., d) -> (..., r + 2) float32."""
    queries = np.asarray(queries, dtype=np.float64)
    flat = queries.reshape(-1, queries.shape[-1])
    projected, residual = _split(flat, subspace)
    bounded = np.column_stack([projected, np.ones(len(flat)), residual]).astype(np.float32)
    return bounded.reshape(*queries.shape[:-1], bounded.shape[1])


def _split(vectors: np.ndarray, subspace: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(S^T v, |v - S S^T v|) per row of vectors (n, d); (v, 0) without a subspace."""
    if subspace is None:
        return vectors, np.zeros(len(vectors))
    projected = vectors @ subspace
    return projected, np.linalg.norm(vectors - projected @ subspace.T, axis=1)


@dataclass(frozen=True)
class CellBounds:
    """An IVF index's cells in member order, with their means and radii.

    order: (n_items,) item ids, cell by cell; offsets: (n_cells + 1,) cell c holds
    order[offsets[c]:offsets[c + 1]]; vectors: (n_items, D) float32, the stored x' in that
    order; means: (n_cells, D) float64; radii: (n_cells,) float64, -inf for empty cells;
    max_norm: the largest |x'| (the scale of the bounds' float error).
    """

    order: np.ndarray
    offsets: np.ndarray
    vectors: np.ndarray
    means: np.ndarray
    radii: np.ndarray
    max_norm: float

    @classmethod
    def from_ivf(cls, index: faiss.Index) -> "CellBounds":
        """Read the stored vectors of a FAISS IVF-Flat index cell by cell; means and radii
        computed from them."""
        ivf = faiss.extract_index_ivf(index)
        lists, dim = ivf.invlists, ivf.d
        sizes = np.array([lists.list_size(c) for c in range(ivf.nlist)], np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        order = np.empty(offsets[-1], np.int64)
        vectors = np.empty((offsets[-1], dim), np.float32)
        for cell in np.flatnonzero(sizes):
            size = int(sizes[cell])
            order[offsets[cell] : offsets[cell + 1]] = faiss.rev_swig_ptr(lists.get_ids(int(cell)), size)
            codes = faiss.rev_swig_ptr(lists.get_codes(int(cell)), size * dim * 4)
            vectors[offsets[cell] : offsets[cell + 1]] = codes.view(np.float32).reshape(size, dim)
        return cls.from_members(order, offsets, vectors)

    @classmethod
    def from_members(cls, order: np.ndarray, offsets: np.ndarray, vectors: np.ndarray) -> "CellBounds":
        """Cells from their members: means and radii (module docstring) computed in float64."""
        sizes = np.diff(offsets)
        cell_of = np.repeat(np.arange(len(sizes)), sizes)
        sums = np.zeros((len(sizes), vectors.shape[1]))
        np.add.at(sums, cell_of, vectors)
        means = sums / np.maximum(sizes, 1)[:, None]
        distances = np.linalg.norm(vectors - means[cell_of], axis=1)
        radii = np.full(len(sizes), -np.inf)
        np.maximum.at(radii, cell_of, distances)
        max_norm = float(np.sqrt(np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64).max(initial=0)))
        return cls(order, offsets, vectors, means, radii, max_norm)

    @property
    def n_cells(self) -> int:
        return len(self.radii)

    @property
    def sizes(self) -> np.ndarray:
        """(n_cells,) items per cell."""
        return np.diff(self.offsets)

    def cell_bounds(self, queries: np.ndarray) -> np.ndarray:
        """<y', mu_c> + |y'| r_c for bound-space queries (..., D) -> (..., n_cells) float64:
        no item of cell c has <y', x'> above it; -inf for empty cells."""
        queries = np.asarray(queries, dtype=np.float64)
        norms = np.linalg.norm(queries, axis=-1, keepdims=True)
        return queries @ self.means.T + norms * self.radii

    def members(self, cell: int) -> tuple[np.ndarray, np.ndarray]:
        """Item ids (n_c,) and stored vectors (n_c, D) of one cell."""
        rows = slice(self.offsets[cell], self.offsets[cell + 1])
        return self.order[rows], self.vectors[rows]
