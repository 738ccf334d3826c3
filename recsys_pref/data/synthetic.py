"""A synthetic dataset with planted personas, so that recovered personas can be checked.

The generative story:

- `n_personas` taste directions ("taste-0", "taste-1", ...) are unit vectors in R^dim,
  mutually orthogonal when n_personas <= dim (random unit vectors otherwise).
- Each item belongs to one persona (balanced): its embedding is that direction plus
  Gaussian noise of norm about `item_noise`. Its tag, and its single genre, is the name of
  the persona direction nearest to its embedding.
- Each user mixes `personas_per_user` randomly chosen personas with Dirichlet(1) weights.
- Persona k chooses items by softmax(<persona_k, item_embedding> / temperature); a user
  chooses by the mix of their personas' choice distributions. A user's history is a draw
  *without replacement* of about density * n_items items (Poisson, at least 5) from that
  mixture, made with exponential races (the Gumbel-top-k trick), which equals drawing
  items one by one (and dropping repeats) and is vectorised. Timestamps increase in drawing order.

Every consumed item gets rating 5.0 and the dataset has no threshold: all rows are positives.
User and item ids are 0..n-1, equal to their indices, so the truth lines up with the dataset.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from recsys_pref.data.dataset import IdMap, InteractionDataset

_USER_CHUNK = 1024  # users scored at once: bounds memory at chunk x n_items floats
_START_TIME = 1_600_000_000  # 2020-09-13, seconds since the epoch
_DAY_S = 86_400


@dataclass(frozen=True)
class SyntheticTruth:
    """The planted structure behind a synthetic dataset (indices = dataset indices).

    persona_vectors: (n_personas, dim) unit taste directions.
    item_embeddings: (n_items, dim).
    user_mix: (n_users, n_personas) persona weights, rows sum to 1, personas_per_user non-zeros.
    item_tags: per item, the name ("taste-k") of its nearest persona direction.
    seed: the seed that generated it.
    """

    persona_vectors: np.ndarray
    item_embeddings: np.ndarray
    user_mix: np.ndarray
    item_tags: list[str]
    seed: int


def persona_name(index: int) -> str:
    """The planted tag of persona `index`."""
    return f"taste-{index}"


def make_synthetic(
    n_users: int = 1000,
    n_items: int = 500,
    n_personas: int = 4,
    density: float = 0.05,
    seed: int = 0,
    dim: int = 16,
    personas_per_user: int = 2,
    *,
    temperature: float = 0.1,
    item_noise: float = 0.5,
) -> InteractionDataset:
    """A dataset drawn from planted personas (see the module docstring); deterministic per seed.

    The truth is in `dataset.ground_truth` (a SyntheticTruth).
    """
    _check_arguments(n_users, n_items, n_personas, density, dim, personas_per_user, temperature, item_noise)
    rng = np.random.default_rng(seed)
    personas = _persona_vectors(rng, n_personas, dim)
    home = rng.permutation(np.arange(n_items) % n_personas)
    items = personas[home] + item_noise * rng.standard_normal((n_items, dim)) / np.sqrt(dim)
    nearest = np.argmax(items @ personas.T, axis=1)
    mix = _user_mix(rng, n_users, n_personas, personas_per_user)
    choice = _softmax(personas @ items.T / temperature)  # (n_personas, n_items)
    counts = np.clip(rng.poisson(max(5.0, density * n_items), size=n_users), 5, n_items)
    users, chosen = _draw_histories(rng, mix, choice, counts)
    timestamps = _timestamps(rng, counts)

    tags = [persona_name(k) for k in nearest.tolist()]
    interactions = pl.DataFrame(
        {
            "user_id": users.astype(np.int64),
            "item_id": chosen.astype(np.int64),
            "rating": np.full(len(users), 5.0),
            "timestamp": timestamps,
        },
        schema={"user_id": pl.Int64, "item_id": pl.Int64, "rating": pl.Float64, "timestamp": pl.Int64},
    )
    item_frame = pl.DataFrame(
        {
            "item_id": np.arange(n_items, dtype=np.int64),
            "title": [f"item {i} ({tag})" for i, tag in enumerate(tags)],
            "genres": [[tag] for tag in tags],
            "tags": [[tag] for tag in tags],
        },
        schema={"item_id": pl.Int64, "title": pl.String, "genres": pl.List(pl.String), "tags": pl.List(pl.String)},
    )
    truth = SyntheticTruth(personas, items, mix, tags, seed)
    return InteractionDataset(
        name="synthetic",
        interactions=interactions,
        items=item_frame,
        user_ids=IdMap(np.arange(n_users, dtype=np.int64), "user"),
        item_ids=IdMap(np.arange(n_items, dtype=np.int64), "item"),
        positive_threshold=None,
        ground_truth=truth,
    )


def _check_arguments(
    n_users: int, n_items: int, n_personas: int, density: float, dim: int,
    personas_per_user: int, temperature: float, item_noise: float,
) -> None:
    whole = {"n_users": n_users, "n_items": n_items, "n_personas": n_personas, "dim": dim,
             "personas_per_user": personas_per_user}
    real = {"density": density, "temperature": temperature, "item_noise": item_noise}
    wrong = [f"{name} must be a whole number, got {value!r}" for name, value in whole.items()
             if isinstance(value, bool) or not isinstance(value, (int, np.integer))]
    wrong += [f"{name} must be a number, got {value!r}" for name, value in real.items()
              if isinstance(value, bool) or not isinstance(value, (int, float, np.number))]
    if wrong:
        raise ValueError("make_synthetic: " + "; ".join(wrong))
    problems = []
    if n_users < 1:
        problems.append(f"n_users must be >= 1, got {n_users}")
    if n_items < 5:
        problems.append(f"n_items must be >= 5 (every user has at least 5 interactions), got {n_items}")
    if n_personas < 1 or dim < 1:
        problems.append(f"n_personas and dim must be >= 1, got {n_personas} and {dim}")
    if not 1 <= personas_per_user <= n_personas:
        problems.append(f"personas_per_user must be in 1..n_personas={n_personas}, got {personas_per_user}")
    if not 0 < density <= 1:
        problems.append(f"density must be in (0, 1], got {density}")
    if temperature <= 0 or item_noise < 0:
        problems.append(f"temperature must be > 0 and item_noise >= 0, got {temperature} and {item_noise}")
    if problems:
        raise ValueError("make_synthetic: " + "; ".join(problems))


def _persona_vectors(rng: np.random.Generator, n_personas: int, dim: int) -> np.ndarray:
    """(n_personas, dim) unit vectors: orthonormal when they fit in R^dim, random otherwise."""
    gaussian = rng.standard_normal((dim, n_personas))
    if n_personas <= dim:
        q, _ = np.linalg.qr(gaussian)
        return np.ascontiguousarray(q.T)
    return (gaussian / np.linalg.norm(gaussian, axis=0)).T.copy()


def _user_mix(rng: np.random.Generator, n_users: int, n_personas: int, per_user: int) -> np.ndarray:
    """(n_users, n_personas): Dirichlet(1) weights over `per_user` random personas per user."""
    chosen = np.argsort(rng.random((n_users, n_personas)), axis=1)[:, :per_user]
    weights = rng.dirichlet(np.ones(per_user), size=n_users)
    mix = np.zeros((n_users, n_personas))
    np.put_along_axis(mix, chosen, weights, axis=1)
    return mix


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _draw_histories(
    rng: np.random.Generator, mix: np.ndarray, choice: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per user, `counts[u]` distinct items drawn without replacement from p = mix[u] @ choice,
    in drawing order. Exponential races (equivalent to Gumbel-top-k): item i "arrives" at
    E_i / p_i with E_i ~ Exp(1); the first k arrivals are a sequential draw without
    replacement. Returns flat (users, items) arrays, grouped by user."""
    n_users, n_items = mix.shape[0], choice.shape[1]
    choice = choice.astype(np.float32)
    users, items = [], []
    for start in range(0, n_users, _USER_CHUNK):
        stop = min(start + _USER_CHUNK, n_users)
        probabilities = mix[start:stop].astype(np.float32) @ choice
        with np.errstate(divide="ignore"):
            arrivals = rng.standard_exponential((stop - start, n_items), dtype=np.float32) / probabilities
        chunk_counts = counts[start:stop]
        width = int(chunk_counts.max())
        first = np.argpartition(arrivals, width - 1, axis=1)[:, :width]
        order = np.argsort(np.take_along_axis(arrivals, first, axis=1), axis=1, kind="stable")
        ranked = np.take_along_axis(first, order, axis=1)
        keep = np.arange(width) < chunk_counts[:, None]
        users.append(np.repeat(np.arange(start, stop), chunk_counts))
        items.append(ranked[keep])
    return np.concatenate(users), np.concatenate(items)


def _timestamps(rng: np.random.Generator, counts: np.ndarray) -> np.ndarray:
    """Increasing seconds per user: a random start within a year, then gaps of about a day."""
    starts = _START_TIME + rng.integers(0, 365 * _DAY_S, size=len(counts))
    gaps = 1 + rng.exponential(_DAY_S, size=int(counts.sum())).astype(np.int64)
    within = np.cumsum(gaps)
    offsets = np.concatenate(([0], np.cumsum(counts)[:-1]))
    within -= np.repeat(within[offsets] - gaps[offsets], counts)
    return np.repeat(starts, counts) + within
