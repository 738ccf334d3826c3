"""The persona model's shared side from implicit's ALS: item embeddings and taste bases.

E (n_items, d) are ALS's item factors (implicit, d factors, the same regularisation lambda and
confidence alpha the user solve uses), the item bias b is 0 and the bases P (K, d) have
orthonormal rows:
- K = d: a rotation of the factor space. The user solve's penalty lambda |c|^2 is isotropic,
  so with one persona the state is exactly ALS's user factors rotated (c = P x): the persona
  model at M = 1 *is* tuned ALS, and extra personas are measured against it;
- K < d: the top-K principal directions of the item factors (of their uncentred second
  moment E^T E, the matrix the user solve sees), then rotated within that subspace.
The rotation is varimax (Kaiser 1958) of the item loadings r_i = P e_i: it makes each base load
heavily on few items and near zero on the rest, so each base reads as one taste (its top items
share labels). Each base's sign is chosen so that its largest loadings are positive, and bases
are ordered by their share of the loadings' energy. With identity bases (AMP-CF) P = I.

Why ALS rather than a gradient-trained shared side: the user state is the exact least-squares
solve against the frozen item side, which is precisely what ALS's item step is fitted for
(fit time is ALS's); the amortized encoder with a gradient-trained item side stayed 4-10%
below tuned ALS (BENCHMARKS.md, issue 3).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from recsys_pref.models.als import ALS

VARIMAX_ITERATIONS = 50  # ml-latest-small: the criterion is within 1% of its 100-step value by 50
VARIMAX_TOLERANCE = 1e-5
#: Items the rotation is fitted on: those with the largest factor norms, which dominate the
#: criterion (ml-latest-small: 2,048 of 9k items reach 99.3% of the full-catalog criterion in
#: a quarter of the time; the rotation then applies to every item).
VARIMAX_ITEMS = 2048


def als_item_factors(user_items: sp.csr_matrix, factors: int, regularization: float, alpha: float,
                     iterations: int, seed: int) -> np.ndarray:
    """implicit's ALS item factors (n_items, factors) float32, fitted on `user_items`."""
    model = ALS(factors=factors, regularization=regularization, alpha=alpha, iterations=iterations, seed=seed)
    return np.asarray(model.fit(user_items).item_factors, dtype=np.float32)


def varimax(loadings: np.ndarray, iterations: int = VARIMAX_ITERATIONS, tolerance: float = VARIMAX_TOLERANCE
            ) -> np.ndarray:
    """The orthogonal rotation R (K, K) maximising the varimax criterion of loadings @ R.

    loadings (n, K). Kaiser's criterion: the summed variance of the squared loadings of each
    column; solved by the usual SVD iteration, stopped when the criterion gains < tolerance.
    BLAS runs single-threaded: at these sizes (K <= 64) threads only add contention (measured
    12x slower per step with 2 threads on a busy 2-core machine)."""
    n, k = loadings.shape
    rotation, criterion = np.eye(k), 0.0
    with threadpool_limits(limits=1, user_api="blas"):
        for _ in range(iterations):
            rotated = loadings @ rotation
            target = rotated**3 - rotated * ((rotated**2).sum(axis=0) / n)
            left, singular, right = np.linalg.svd(loadings.T @ target)
            rotation = left @ right
            previous, criterion = criterion, float(singular.sum())
            if previous and criterion < previous * (1 + tolerance):
                break
    return rotation


def taste_bases(item_factors: np.ndarray, n_bases: int) -> np.ndarray:
    """Orthonormal bases P (K, d) for item factors E (n_items, d): the top-K principal directions
    of E^T E rotated by varimax (fitted on the VARIMAX_ITEMS strongest items), signed so each
    base's largest loadings are positive, ordered by loading energy (module docstring)."""
    factors = np.asarray(item_factors, dtype=np.float64)
    if not 1 <= n_bases <= factors.shape[1]:
        raise ValueError(f"n_bases must lie in 1..{factors.shape[1]} (the factor dimension), got {n_bases}")
    with threadpool_limits(limits=1, user_api="blas"):  # small matrices: threads only contend (see varimax)
        _, vectors = np.linalg.eigh(factors.T @ factors)  # ascending eigenvalues
        principal = vectors[:, ::-1][:, :n_bases].T  # (K, d): the top principal directions of E^T E
        loadings = factors @ principal.T  # (n_items, K)
        strongest = np.argsort(-np.linalg.norm(loadings, axis=1), kind="stable")[:VARIMAX_ITEMS]
        left, _, right = np.linalg.svd(varimax(loadings[strongest].astype(np.float32)).astype(np.float64))
        bases = (left @ right).T @ principal  # (K, d), orthonormal rows: a rotation within the top-K subspace
        loadings = factors @ bases.T  # (n_items, K)
    signs = np.where((loadings**3).sum(axis=0) < 0, -1.0, 1.0)
    order = np.argsort(-(loadings**2).sum(axis=0), kind="stable")
    return (bases * signs[:, None])[order].astype(np.float32)
