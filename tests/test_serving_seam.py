"""The serving pipeline's stages combined, and the seam for other pipelines: score and explain_many."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recsys_pref.data import UnknownIdError, make_synthetic
from recsys_pref.explain.control import Control
from recsys_pref.models.persona import PersonaConfig, PersonaState
from recsys_pref.pipeline import PersonaPipeline
from recsys_pref.safeguards import SafeguardsConfig

SCORE_COLUMNS = ["user_id", "item_id", "score", "persona", "persona_label", "persona_weight", "score_share"]


@pytest.fixture(scope="module")
def candidates(pipeline, dataset):
    """Two users' recommendations, reversed, as another retriever would hand them over."""
    frame = pipeline.recommend(dataset.user_ids.to_list()[:2], k=6)
    return frame.select("user_id", "item_id").reverse()


def test_score_returns_the_candidate_rows_in_their_order_with_the_score_columns(pipeline, candidates):
    scored = pipeline.score(candidates)
    assert scored.columns == SCORE_COLUMNS
    assert scored.select("user_id", "item_id").equals(candidates)


def test_score_gives_the_same_scores_and_personas_as_recommend(pipeline, dataset, candidates):
    recommended = pipeline.recommend(dataset.user_ids.to_list()[:2], k=6)
    joined = pipeline.score(candidates).join(recommended, on=["user_id", "item_id"], suffix="_recommend")
    assert joined.height == candidates.height
    np.testing.assert_allclose(joined["score"].to_numpy(), joined["score_recommend"].to_numpy(), rtol=1e-5)
    assert joined["persona"].to_list() == joined["persona_recommend"].to_list()
    assert joined["persona_label"].to_list() == joined["persona_label_recommend"].to_list()


def test_explain_many_adds_because_you_liked_from_the_users_history(pipeline, dataset, candidates):
    explained = pipeline.explain_many(candidates)
    assert explained.columns == SCORE_COLUMNS + ["because_you_liked"]
    histories = dataset.to_csr()
    for row in explained.iter_rows(named=True):
        own = set(dataset.item_ids.to_external(histories[dataset.user_ids.to_index(row["user_id"])[0]].indices))
        assert set(row["because_you_liked"]) <= own
    assert any(row["because_you_liked"] for row in explained.iter_rows(named=True))


def test_score_folds_in_an_unknown_user_from_a_history(pipeline, dataset):
    items = dataset.item_ids.to_list()
    history = pl.DataFrame({"user_id": [9999] * 4, "item_id": items[:4]})
    scored = pipeline.score(pl.DataFrame({"user_id": [9999, 9999], "item_id": items[10:12]}), history=history)
    assert np.isfinite(scored["score"].to_numpy()).all()


def test_score_names_an_unknown_user_without_history(pipeline, dataset):
    with pytest.raises(UnknownIdError, match="9999"):
        pipeline.score(pl.DataFrame({"user_id": [9999], "item_id": dataset.item_ids.to_list()[:1]}))


@pytest.mark.parametrize(
    "rows, error, message",
    [
        ({"user_id": [0, 0], "item_id": [1, 123456]}, UnknownIdError, r"rows \[1\]"),
        ({"user_id": [0, None], "item_id": [1, 2]}, ValueError, r"null user_id in rows \[1\]"),
        ({"user_id": [0, 0, 1], "item_id": [1, 1, 1]}, ValueError, r"repeat .* rows \[0, 1\]"),
        ({"user_id": ["0"], "item_id": [1]}, TypeError, "user_id is String"),
        ({"user": [0], "item_id": [1]}, ValueError, "missing"),
    ],
)
def test_bad_candidate_frames_are_refused_naming_the_rows(pipeline, rows, error, message):
    with pytest.raises(error, match=message):
        pipeline.score(pl.DataFrame(rows))


def test_control_names_an_unknown_persona_label(pipeline, dataset):
    with pytest.raises(ValueError, match="Western"):
        pipeline.recommend(dataset.user_ids.to_list()[:2], k=5, control=Control(personas={"Western": 0.0}))


def test_mute_and_safeguards_combine(pipeline, dataset):
    users = dataset.user_ids.to_list()[:4]
    safeguards = SafeguardsConfig(calibration_lambda=0.5, exploration_share=0.2)
    frame = pipeline.recommend(users, k=5, control=Control(personas={0: 0.0}), safeguards=safeguards)
    ranked = frame.filter(~pl.col("exploration"))
    assert (ranked["persona"] == 1).all() and frame["exploration"].any()
    assert frame.filter(pl.col("exploration"))["persona_label"].str.starts_with("exploration: ").all()


def test_an_onboarding_state_is_served_like_any_other(pipeline, dataset):
    known = dataset.user_ids.to_list()[5]
    folded = pipeline.user_batch([known]).state
    given = pipeline.recommend([9999], k=5, states=PersonaState(folded.coefficients, folded.prior_logits))
    plain = pipeline.recommend([known], k=5, filter_seen="none")
    assert given["item_id"].to_list() == plain["item_id"].to_list()
    assert given["user_id"].to_list() == [9999] * 5


def test_user_ids_of_another_type_are_refused(pipeline):
    with pytest.raises(TypeError, match="user ids must be Int64"):
        pipeline.recommend(["newcomer"], k=5)


def test_states_need_one_row_per_user(pipeline):
    state = pipeline.population_state
    with pytest.raises(ValueError, match="one row per user"):
        pipeline.recommend([9998, 9999], k=3, states=state)


def test_score_reranks_another_models_candidates(pipeline, dataset):
    """The README's seam: implicit's ALS retrieves, the persona pipeline reranks and explains."""
    from recsys_pref import ALS

    histories = dataset.to_csr()
    rows = np.arange(3)
    ids, _ = ALS(factors=8, iterations=5).fit(histories).recommend(rows, histories[rows], N=20)
    candidates = pl.DataFrame({"user_id": np.repeat(dataset.user_ids.to_external(rows), ids.shape[1]),
                               "item_id": dataset.item_ids.to_external(ids.ravel())})
    reranked = pipeline.score(candidates).sort(["user_id", "score"], descending=[False, True])
    best = reranked.group_by("user_id", maintain_order=True).head(1)
    expected = [pipeline.score(candidates.filter(pl.col("user_id") == user))["score"].max() for user in best["user_id"]]
    np.testing.assert_allclose(best["score"].to_numpy(), expected)


@pytest.fixture(scope="module")
def worded():
    """A pipeline with enough data for a summary vocabulary (4 planted tastes, 300 users)."""
    data = make_synthetic(n_users=300, n_items=120, n_personas=4, density=0.15, seed=1)
    return data, PersonaPipeline.fit(data, PersonaConfig(n_personas=2, n_bases=8, embedding_dim=8, progress=False))


def test_a_users_summary_reads_back_into_a_state_with_the_same_summary(worded):
    data, pipeline = worded
    user = data.user_ids.to_list()[0]
    text = pipeline.summary(user)
    state = pipeline.state_from_summary(text)
    assert pipeline.explainer.summaries(state)[0] == text
    assert pipeline.recommend([user], k=5, states=state).height == 5


def test_summaries_come_in_three_lengths(worded):
    data, pipeline = worded
    user = data.user_ids.to_list()[0]
    clause, sentence, three = (pipeline.summary(user, length=length) for length in ("clause", "sentence", "three"))
    assert len(clause) < len(sentence) < len(three)
    assert three.startswith(sentence) and clause in sentence


def test_an_unreadable_summary_is_refused(worded):
    _, pipeline = worded
    with pytest.raises(ValueError, match="Western"):
        pipeline.state_from_summary("Mostly Western (100%).")


def test_a_user_asked_for_twice_gets_the_history_in_both_rows(pipeline, dataset):
    items = dataset.item_ids.to_list()
    history = pl.DataFrame({"user_id": [9999] * 4, "item_id": items[:4]})
    frame = pipeline.recommend([9999, 9999], k=3, history=history)
    first, second = frame[:3], frame[3:]
    assert first["item_id"].to_list() == second["item_id"].to_list()
    assert not set(frame["item_id"].to_list()) & set(items[:4])
