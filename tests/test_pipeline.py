"""The polars API of a fitted persona model, unseen users, and its artifact round trip."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsys_pref.data import UnknownIdError
from recsys_pref.models.artifact import ArtifactError
from recsys_pref.pipeline import RECOMMENDATION_COLUMNS, PersonaPipeline



def test_recommend_returns_one_tidy_frame_in_external_ids(pipeline, dataset):
    users = dataset.user_ids.to_list()[:3]
    frame = pipeline.recommend(pl.DataFrame({"user_id": users}), k=5)
    assert frame.columns == ["user_id", "rank", "item_id", "score", "persona", "persona_label", "persona_weight",
                             "score_share", "because_you_liked", "exploration"]
    assert frame.columns == list(RECOMMENDATION_COLUMNS)
    assert frame.height == 15
    assert set(frame["user_id"].to_list()) == set(users)
    assert set(frame["item_id"].to_list()) <= set(dataset.item_ids.to_list())
    assert frame["rank"].to_list()[:5] == [1, 2, 3, 4, 5]


def test_recommend_never_returns_seen_items(pipeline, dataset):
    user = dataset.user_ids.to_list()[0]
    seen = set(dataset.interactions.filter(pl.col("user_id") == user)["item_id"].to_list())
    frame = pipeline.recommend([user], k=40)
    assert not seen & set(frame["item_id"].to_list())
    assert frame.height == 40 - len(seen)


def test_scores_descend_and_persona_weights_are_attention(pipeline, dataset):
    frame = pipeline.recommend(dataset.user_ids.to_list()[:2], k=10)
    for _, group in frame.group_by("user_id"):
        assert np.all(np.diff(group.sort("rank")["score"].to_numpy()) <= 0)
    assert frame["persona"].is_between(0, pipeline.model.config.n_personas - 1).all()
    assert frame["persona_weight"].is_between(1 / pipeline.model.config.n_personas - 1e-6, 1.0).all()


def test_unknown_user_without_history_is_an_error_by_default(pipeline):
    with pytest.raises(UnknownIdError, match="no history for user"):
        pipeline.recommend([10_000], k=5)


def test_unknown_user_without_history_can_get_the_population_prior(pipeline):
    frame = pipeline.recommend([10_000, 10_001], k=5, unknown_users="population")
    lists = frame.group_by("user_id", maintain_order=True).agg(pl.col("item_id"))["item_id"].to_list()
    assert lists[0] == lists[1]


def test_unknown_user_with_a_history_is_folded_in(pipeline, dataset):
    user = dataset.user_ids.to_list()[5]
    own = dataset.interactions.filter(pl.col("user_id") == user).select("user_id", "item_id")
    as_new = own.with_columns(pl.lit(10_002).alias("user_id"))
    known = pipeline.recommend([user], k=5)
    folded = pipeline.recommend([10_002], k=5, history=as_new)
    assert known["item_id"].to_list() == folded["item_id"].to_list()


def test_history_with_unknown_items_is_refused(pipeline):
    history = pl.DataFrame({"user_id": [10_002], "item_id": [10_000]})
    with pytest.raises(UnknownIdError, match="unknown item id"):
        pipeline.recommend([10_002], k=5, history=history)


def test_k_below_one_is_refused(pipeline, dataset):
    with pytest.raises(ValueError, match="k must be >= 1"):
        pipeline.recommend(dataset.user_ids.to_list()[:1], k=0)


def test_save_load_round_trip_gives_identical_recommendations(pipeline, dataset, tmp_path: Path):
    users = dataset.user_ids.to_list()[:4]
    pipeline.save(tmp_path / "model")
    loaded = PersonaPipeline.load(tmp_path / "model")
    assert loaded.recommend(users, k=7).equals(pipeline.recommend(users, k=7))
    assert loaded.model.config == pipeline.model.config


def test_loading_a_tampered_artifact_names_the_corruption(pipeline, tmp_path: Path):
    directory = pipeline.save(tmp_path / "model")
    meta = json.loads((directory / "meta.json").read_text())
    meta["meta"]["shape"] = [1, 1]
    (directory / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="corrupted: meta.json"):
        PersonaPipeline.load(directory)


def test_loading_another_kind_of_artifact_is_refused(tmp_path: Path):
    from recsys_pref.models.artifact import save_artifact

    save_artifact(tmp_path / "other", "something-else", {"x": np.zeros(2, np.float32)}, {})
    with pytest.raises(ArtifactError, match="not 'persona-pipeline'"):
        PersonaPipeline.load(tmp_path / "other")
