"""Large synthetic catalogs with trained-like item vectors, for the retrieval benchmark.

Retrieval speed and the certificate's success depend on the geometry of the item vectors
(clusters, anisotropy, the spread of biases against the spread of rewards) and of the user
queries; isotropic Gaussian vectors have none of it and make every index look good. So the
catalog is derived from a *trained* persona model:

1. a planted-persona dataset (`make_synthetic`: `source_tastes` taste directions, users
   mixing two, items clustered around the tastes) is drawn and the persona model is fitted
   on its training users (`PersonaRecommender`, the library's default M = 2, K = d = 64);
2. the catalog's items are drawn from a Gaussian kernel density estimate of the trained
   item vectors [e_i, b_i] jointly: x = mu + (x_j - mu + h L z) / sqrt(1 + h^2), with x_j a
   trained item drawn uniformly, L the Cholesky factor of the trained vectors' covariance,
   z standard normal and h = `bandwidth`. Each new item is a perturbed trained item, the
   catalog keeps the trained clusters, anisotropy, embedding-bias correlation and
   popularity-skewed biases, and its mean and covariance equal the trained ones;
3. the query users are held-out users of the same dataset, folded in by the trained encoder
   (their states are what the model produces, personas and prior logits included), each
   with `seen_per_user` excluded items drawn with probability proportional to exp(b_i)
   (seen items are mostly popular ones).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recsys_pref.data.synthetic import make_synthetic
from recsys_pref.models.persona import PersonaConfig, PersonaRecommender, PersonaState
from recsys_pref.models.persona.scorer import SharedSide


@dataclass(frozen=True)
class SourceConfig:
    """The trained model the catalogs are derived from.

    n_users / n_items / tastes / taste_dim / density: the planted-persona dataset
        (`make_synthetic`); `query_users` of its users are held out as the catalogs' users.
    query_users: held-out users folded in as queries.
    model: the persona model's hyperparameters (the library defaults with fewer epochs).
    seed: seeds the dataset and the model.
    """

    n_users: int = 4000
    n_items: int = 3000
    tastes: int = 16
    taste_dim: int = 32
    density: float = 0.02
    query_users: int = 1000
    model: PersonaConfig = PersonaConfig(max_epochs=40, patience=5, progress=False)
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.query_users < self.n_users:
            raise ValueError(f"query_users must be in 1..n_users-1, got {self.query_users} of {self.n_users}")


@dataclass(frozen=True)
class TrainedSource:
    """A fitted model's catalog and the held-out users' states (n, M, K) / (n, M)."""

    catalog: SharedSide
    users: PersonaState


def fit_source(config: SourceConfig) -> TrainedSource:
    """Fit the persona model on the planted dataset's training users; fold the rest in."""
    dataset = make_synthetic(n_users=config.n_users, n_items=config.n_items, n_personas=config.tastes,
                             density=config.density, seed=config.seed, dim=config.taste_dim)
    histories = dataset.to_csr()
    n_train = config.n_users - config.query_users
    model = PersonaRecommender(config.model).fit(histories[:n_train])
    return TrainedSource(model.shared, model.fold_in(histories[n_train:]))


def expand_catalog(source: SharedSide, n_items: int, bandwidth: float = 0.5, seed: int = 0) -> SharedSide:
    """`n_items` items drawn from the kernel density estimate of `source`'s [e_i, b_i]
    (module docstring, step 2); bases and temperature are the source's."""
    if n_items < 1 or not bandwidth >= 0:
        raise ValueError(f"n_items must be >= 1 and bandwidth >= 0, got {n_items} and {bandwidth}")
    rng = np.random.default_rng(seed)
    vectors = np.column_stack([source.item_embeddings, source.item_bias]).astype(np.float64)  # (n, d + 1)
    mean = vectors.mean(axis=0)
    covariance = np.cov(vectors, rowvar=False) + 1e-9 * np.eye(vectors.shape[1])
    cholesky = np.linalg.cholesky(covariance)
    drawn = np.empty((n_items, vectors.shape[1]), np.float32)
    for start in range(0, n_items, 100_000):  # bounded float64 temporaries
        stop = min(start + 100_000, n_items)
        parents = vectors[rng.integers(0, len(vectors), stop - start)]
        noise = rng.standard_normal((stop - start, vectors.shape[1])) @ cholesky.T
        drawn[start:stop] = mean + (parents - mean + bandwidth * noise) / np.sqrt(1 + bandwidth**2)
    return SharedSide(drawn[:, :-1], drawn[:, -1], source.bases, source.temperature)


def seen_items(catalog: SharedSide, n_users: int, per_user: int, seed: int = 0) -> sp.csr_matrix:
    """(n_users, n_items) binary: `per_user` distinct items per user, drawn with probability
    proportional to exp(b_i) (Gumbel-top-k)."""
    per_user = min(per_user, catalog.n_items)
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n_users):
        keys = catalog.item_bias + rng.gumbel(size=catalog.n_items).astype(np.float32)
        rows.append(np.sort(np.argpartition(-keys, per_user - 1)[:per_user]) if per_user else np.empty(0, np.int64))
    indptr = np.arange(n_users + 1) * per_user
    data = np.ones(n_users * per_user, np.float32)
    return sp.csr_matrix((data, np.concatenate(rows), indptr), shape=(n_users, catalog.n_items))
