"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data").

Closed form: P = (X^T X + l2 I)^-1, B = I - P diag(1 / diag(P)), i.e. B_ij = -P_ij / P_jj off
the diagonal and B_jj = 0. Scores are X B. B is a dense (n_items, n_items) matrix, which caps
the catalog size (`max_items`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from recsys_pref.models.base import ModelTooLargeError, Recommender, stored_array

#: Catalogs up to this size are solved in float64 (Gram, Cholesky and inverse); larger ones in
#: float32, which halves memory and time (on ml-latest-small, 9,724 items, B differs from the
#: float64 solution by 2e-7 at most, for entries up to 0.1).
FLOAT64_MAX_ITEMS = 5_000


@dataclass(frozen=True)
class EASEConfig:
    """l2: the ridge penalty lambda added to the diagonal of the item Gram matrix X^T X (in
        units of interaction counts; Steck uses 500 on ML-20M, smaller data wants smaller).
    max_items: refuse catalogs larger than this: B alone takes 4 * n_items^2 bytes (30000 items:
        3.6 GB) and the solve needs about twice that.
    """

    l2: float = 500.0
    max_items: int = 30_000

    def __post_init__(self) -> None:
        if not self.l2 > 0:
            raise ValueError(f"l2 must be > 0, got {self.l2}")
        if self.max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {self.max_items}")


#: Tuning grid (at most 8 configurations).
GRID: list[dict[str, Any]] = [{"l2": l2} for l2 in (50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0)]


def ease_weights(user_items: sp.spmatrix, l2: float, dtype: Any = np.float64) -> np.ndarray:
    """The EASE item-item matrix B (n_items, n_items) in `dtype`, with a zero diagonal.

    Inverts the Gram matrix in place via Cholesky (LAPACK potrf + potri): the peak memory is
    about two dense n_items^2 arrays (the sparse Gram densified, then solved in place).
    """
    X = sp.csr_matrix(user_items, dtype=dtype)
    n_items = X.shape[1]
    gram = np.asarray((X.T @ X).toarray(), dtype=dtype, order="F")
    gram[np.diag_indices(n_items)] += l2
    factor, _ = scipy.linalg.cho_factor(gram, lower=False, overwrite_a=True, check_finite=False)
    potri = scipy.linalg.get_lapack_funcs("potri", (factor,))
    upper, info = potri(factor, lower=0, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE: inverting the Gram matrix failed (LAPACK potri info={info})")
    # potri fills the upper triangle of the Fortran-ordered inverse; its transpose is a
    # C-ordered view holding the lower triangle. Mirror it in blocks (no n^2 index arrays).
    P = upper.T
    block = 256
    for start in range(0, n_items, block):
        stop = min(start + block, n_items)
        P[start:stop, stop:] = P[stop:, start:stop].T
        tile = P[start:stop, start:stop]
        P[start:stop, start:stop] = np.tril(tile) + np.tril(tile, -1).T
    diag = np.diag(P).copy()
    P /= -diag[None, :]  # B_ij = -P_ij / P_jj
    P[np.diag_indices(n_items)] = 0.0
    return P


class EASE(Recommender):
    """EASE with a dense item-item weight matrix B; score(h) = h @ B for any history h, so known
    and new users are scored identically (userids are ignored)."""

    name: ClassVar[str] = "ease"
    config_class: ClassVar[type] = EASEConfig
    grid: ClassVar[list[dict[str, Any]]] = GRID

    B: np.ndarray | None = None

    def _fit(self, user_items: sp.csr_matrix) -> None:
        n_items = user_items.shape[1]
        if n_items > self.config.max_items:
            gigabytes = 4 * n_items**2 / 1e9
            raise ModelTooLargeError(
                f"EASE needs a dense {n_items} x {n_items} item matrix ({gigabytes:.1f} GB in float32, "
                f"about twice that while solving), more than max_items={self.config.max_items} allows; "
                "prune the catalog (e.g. drop rare items) or raise max_items if the memory is there"
            )
        dtype = np.float64 if n_items <= FLOAT64_MAX_ITEMS else np.float32
        self.B = np.ascontiguousarray(ease_weights(user_items, self.config.l2, dtype), dtype=np.float32)

    def _score(self, user_items: sp.csr_matrix, userids: np.ndarray | None) -> np.ndarray:
        assert self.B is not None
        return np.asarray(user_items @ self.B, dtype=np.float32)

    def _arrays(self) -> dict[str, np.ndarray]:
        assert self.B is not None
        return {"B": self.B}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.B = stored_array(arrays, "B", (self.n_items, self.n_items))
