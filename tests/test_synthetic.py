"""Synthetic planted-persona data: shapes, determinism, the planted structure, speed."""
from __future__ import annotations

import time

import numpy as np
import polars as pl
import pytest

from recsys_pref.data import SyntheticTruth, load_dataset, make_synthetic


@pytest.fixture(scope="module")
def small():
    return make_synthetic(n_users=300, n_items=200, n_personas=4, density=0.05, seed=3)


def test_shapes_and_dtypes(small) -> None:
    truth = small.ground_truth
    assert isinstance(truth, SyntheticTruth) and truth.seed == 3
    assert truth.persona_vectors.shape == (4, 16)
    assert truth.item_embeddings.shape == (200, 16)
    assert truth.user_mix.shape == (300, 4)
    assert len(truth.item_tags) == 200
    assert (small.n_users, small.n_items) == (300, 200)
    assert small.interactions.schema == pl.Schema(
        {"user_id": pl.Int64, "item_id": pl.Int64, "rating": pl.Float64, "timestamp": pl.Int64}
    )
    assert small.items.schema == pl.Schema(
        {"item_id": pl.Int64, "title": pl.String, "genres": pl.List(pl.String), "tags": pl.List(pl.String)}
    )
    assert small.items["tags"].to_list() == [[tag] for tag in truth.item_tags]
    assert small.positive_threshold is None and small.positives().height == small.interactions.height


def test_deterministic_per_seed(small) -> None:
    again = make_synthetic(n_users=300, n_items=200, n_personas=4, density=0.05, seed=3)
    assert again.interactions.equals(small.interactions) and again.items.equals(small.items)
    for field in ("persona_vectors", "item_embeddings", "user_mix"):
        np.testing.assert_array_equal(getattr(again.ground_truth, field), getattr(small.ground_truth, field))
    other = make_synthetic(n_users=300, n_items=200, n_personas=4, density=0.05, seed=4)
    assert not other.interactions.equals(small.interactions)


def test_histories(small) -> None:
    per_user = small.interactions.group_by("user_id").agg(
        n=pl.len(), increasing=(pl.col("timestamp").diff().drop_nulls() > 0).all()
    )
    assert per_user.height == 300
    assert per_user["n"].min() >= 5
    assert 0.5 * 10 < per_user["n"].mean() < 1.5 * 10  # ~ density * n_items
    assert per_user["increasing"].all()
    assert small.interactions.n_unique(subset=["user_id", "item_id"]) == small.interactions.height


def test_planted_structure(small) -> None:
    truth = small.ground_truth
    np.testing.assert_allclose(truth.persona_vectors @ truth.persona_vectors.T, np.eye(4), atol=1e-12)
    np.testing.assert_allclose(truth.user_mix.sum(axis=1), 1.0)
    assert ((truth.user_mix > 0).sum(axis=1) == 2).all()
    nearest = np.argmax(truth.item_embeddings @ truth.persona_vectors.T, axis=1)
    assert truth.item_tags == [f"taste-{k}" for k in nearest]
    users = small.interactions["user_id"].to_numpy()
    items = small.interactions["item_id"].to_numpy()
    from_own_personas = truth.user_mix[users, nearest[items]] > 0
    assert from_own_personas.mean() > 0.95


def test_more_personas_than_dimensions_and_bad_arguments() -> None:
    dataset = make_synthetic(n_users=20, n_items=30, n_personas=6, dim=3, personas_per_user=3)
    np.testing.assert_allclose(np.linalg.norm(dataset.ground_truth.persona_vectors, axis=1), 1.0)
    with pytest.raises(ValueError, match="personas_per_user"):
        make_synthetic(n_personas=2, personas_per_user=3)
    with pytest.raises(ValueError, match="n_items must be >= 5"):
        make_synthetic(n_items=3)


def test_reachable_by_name() -> None:
    dataset = load_dataset("synthetic", n_users=50, n_items=40, seed=1)
    assert dataset.name == "synthetic" and (dataset.n_users, dataset.n_items) == (50, 40)
    assert dataset.interactions.equals(make_synthetic(n_users=50, n_items=40, seed=1).interactions)


def test_large_is_fast() -> None:
    start = time.perf_counter()
    dataset = make_synthetic(n_users=10_000, n_items=5_000, density=0.01, seed=0)
    assert time.perf_counter() - start < 15.0
    assert dataset.n_users == 10_000 and dataset.interactions.height > 10_000 * 40
