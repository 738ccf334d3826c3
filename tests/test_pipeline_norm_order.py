"""The pipeline's fast paths change nothing it serves: top-K through the norm order, persona
labels from each persona's top items found through it, vectorized explanation rows."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl
import pytest

from recsys_pref.data import make_synthetic
from recsys_pref.pipeline import PersonaPipeline
from recsys_pref.retrieval.serving import RetrievalConfig


@pytest.fixture(scope="module")
def dataset():
    """More items than the norm order's first block (1,024), so that prefixes are searched."""
    return make_synthetic(n_users=300, n_items=3000, n_personas=2, density=0.01, seed=5)


@pytest.fixture(scope="module")
def pipeline(dataset, tiny_persona):
    return PersonaPipeline.fit(dataset, tiny_persona)


def served(pipeline: PersonaPipeline, norm_order: bool) -> PersonaPipeline:
    return replace(pipeline, retrieval=RetrievalConfig(min_items=1, norm_order=norm_order), loaded_index=None)


def test_recommend_through_the_norm_order_equals_the_index(pipeline, dataset):
    users = dataset.user_ids.to_list()[:60]
    fast, indexed = served(pipeline, True).recommend(users, k=10), served(pipeline, False).recommend(users, k=10)
    assert fast.drop("score").equals(indexed.drop("score"))
    np.testing.assert_allclose(fast["score"].to_numpy(), indexed["score"].to_numpy(), rtol=1e-5)


def test_persona_labels_from_the_norm_order_equal_those_of_the_catalog_ranking(pipeline, dataset):
    state = pipeline.user_batch(dataset.user_ids.to_list()[:60]).state
    fast = pipeline.explainer.describe(state)
    catalog = replace(pipeline.explainer, persona_tops=None).describe(state)
    assert [[persona.top_items for persona in user] for user in fast] == \
        [[persona.top_items for persona in user] for user in catalog]
    assert [[persona.label for persona in user] for user in fast] == \
        [[persona.label for persona in user] for user in catalog]


def test_because_you_liked_is_a_list_column_of_the_models_item_ids(pipeline, dataset):
    frame = pipeline.recommend(dataset.user_ids.to_list()[:20], k=5)
    assert frame.schema["because_you_liked"] == pl.List(frame.schema["item_id"])
    for user, liked in zip(frame["user_id"].to_list(), frame["because_you_liked"].to_list()):
        assert set(liked) <= set(dataset.interactions.filter(pl.col("user_id") == user)["item_id"].to_list())


def test_recommend_without_explanations_keeps_the_ranking_and_the_schema(pipeline, dataset):
    users = dataset.user_ids.to_list()[:20]
    full, bare = pipeline.recommend(users, k=5), pipeline.recommend(users, k=5, explain=False)
    assert bare.schema == full.schema
    assert bare.select("user_id", "rank", "item_id", "score", "exploration").equals(
        full.select("user_id", "rank", "item_id", "score", "exploration"))
    assert bare["persona_label"].null_count() == bare["because_you_liked"].null_count() == bare.height
