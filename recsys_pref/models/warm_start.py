"""Warm start of the persona model from implicit's ALS (`PersonaConfig.warm_start`).

ALS is fitted on the same training matrix with d = embedding_dim factors, then:
- item embeddings E start at ALS's item factors, rescaled to unit mean row norm (the scale of
  the random initialisation; user factors are scaled inversely so products are unchanged);
- the bases P start at the top principal directions of the user factors (what users differ
  in), completed by random orthonormal directions when K exceeds their rank;
- the encoder's head bias starts at the coefficients of M k-means centroids of the user
  factors, so before training every user is the M typical ALS users as personas.
With identity bases (AMP-CF) only E and the personas are set. Training then proceeds as usual.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from recsys_pref.models.als import ALS


@dataclass(frozen=True)
class WarmStart:
    """item_embeddings (n_items, d); bases (K, d), None to keep the network's (identity) bases;
    persona_coefficients (M, K): the personas every user starts from."""

    item_embeddings: np.ndarray
    bases: np.ndarray | None
    persona_coefficients: np.ndarray


def kmeans(points: np.ndarray, n_clusters: int, rng: np.random.Generator, iterations: int = 25) -> np.ndarray:
    """Centroids (n_clusters, d) of `points` (n, d) by Lloyd's algorithm from k-means++ seeds."""
    if len(points) < n_clusters:
        raise ValueError(f"k-means needs at least {n_clusters} points, got {len(points)}")
    centroids = [points[rng.integers(len(points))]]
    for _ in range(1, n_clusters):
        distance = np.min([((points - c) ** 2).sum(axis=1) for c in centroids], axis=0)
        centroids.append(points[rng.choice(len(points), p=distance / distance.sum())] if distance.sum() > 0
                         else points[rng.integers(len(points))])
    centres = np.array(centroids)
    for _ in range(iterations):
        assignment = ((points[:, None, :] - centres[None]) ** 2).sum(axis=2).argmin(axis=1)
        for cluster in range(n_clusters):
            members = points[assignment == cluster]
            if len(members):
                centres[cluster] = members.mean(axis=0)
    return centres


def principal_bases(user_factors: np.ndarray, n_bases: int, rng: np.random.Generator) -> np.ndarray:
    """(K, d) orthonormal rows: the top principal directions of `user_factors` (n, d), then
    random directions orthogonal to them once K exceeds d's or the data's rank."""
    d = user_factors.shape[1]
    _, _, directions = np.linalg.svd(user_factors - user_factors.mean(axis=0), full_matrices=False)
    if n_bases <= len(directions):
        return directions[:n_bases]
    extra = rng.standard_normal((n_bases - len(directions), d))
    extra -= extra @ directions.T @ directions  # orthogonal to the principal directions
    return np.vstack([directions, extra / np.linalg.norm(extra, axis=1, keepdims=True)])


def als_warm_start(user_items: sp.csr_matrix, n_personas: int, n_bases: int, embedding_dim: int,
                   identity_bases: bool, seed: int) -> WarmStart:
    """Fit ALS (embedding_dim factors, its default regularisation) on `user_items` and derive
    the initial weights described in the module docstring."""
    als = ALS(factors=embedding_dim, seed=seed).fit(user_items)
    active = np.diff(user_items.indptr) > 0
    scale = float(np.linalg.norm(als.item_factors, axis=1).mean()) or 1.0
    items, users = als.item_factors / scale, als.user_factors[active] * scale
    rng = np.random.default_rng(seed)
    bases = None if identity_bases else principal_bases(users, n_bases, rng)
    centroids = kmeans(users, n_personas, rng)  # (M, d)
    basis = np.eye(embedding_dim) if bases is None else bases
    coefficients = np.linalg.lstsq(basis.T, centroids.T, rcond=None)[0].T  # (M, K): c_m P ~= centroid_m
    return WarmStart(items.astype(np.float32), None if bases is None else bases.astype(np.float32),
                     coefficients.astype(np.float32))


def apply_warm_start(network: torch.nn.Module, start: WarmStart) -> None:
    """Copy `start` into a PersonaNetwork's item embeddings, bases and encoder head bias."""
    with torch.no_grad():
        network.item_embeddings.copy_(torch.from_numpy(start.item_embeddings))
        if start.bases is not None:
            network.bases.copy_(torch.from_numpy(start.bases))
        n_coefficients = start.persona_coefficients.size
        network.head.bias[:n_coefficients] = torch.from_numpy(start.persona_coefficients.ravel())
