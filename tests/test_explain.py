"""The explanation layer: attribution, labels, control and summaries (the score itself: test_scorer.py)."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from recsys_pref.data import make_synthetic
from recsys_pref.explain.attribution import explain_recommendations
from recsys_pref.explain.control import Control, control_weights, resolve
from recsys_pref.explain.labels import (
    PersonaDescription,
    base_labels,
    describe_personas,
    eligible_items,
    item_tag_lists,
)
from recsys_pref.explain.summary import persona_mix, summarize
from recsys_pref.models.persona import PersonaConfig, PersonaRecommender
from recsys_pref.models.persona.scorer import ControlWeights

CONFIG = PersonaConfig(n_personas=2, n_bases=6, embedding_dim=8, hidden_dim=32, max_epochs=40, patience=10,
                       batch_size=32, learning_rate=3e-3, progress=False)


@pytest.fixture(scope="module")
def dataset():
    return make_synthetic(n_users=240, n_items=60, n_personas=3, density=0.15, personas_per_user=1, seed=4)


@pytest.fixture(scope="module")
def model(dataset):
    return PersonaRecommender(CONFIG).fit(dataset.to_csr())


@pytest.fixture(scope="module")
def state(model, dataset):
    return model.fold_in(dataset.to_csr()[:12])


def test_score_shares_sum_to_the_score(model, state):
    rng = np.random.default_rng(0)
    items = rng.integers(0, 60, size=(len(state), 7))
    explained = explain_recommendations(model.scorer, state, sp.csr_matrix((len(state), 60)), items)
    np.testing.assert_allclose(explained.shares.sum(axis=1), explained.scores, rtol=1e-5, atol=1e-5)


def test_score_shares_sum_to_the_score_under_control(model, state):
    items = np.tile(np.arange(10), (len(state), 1))
    explained = explain_recommendations(model.scorer, state, sp.csr_matrix((len(state), 60)), items,
                                         ControlWeights(np.array([3.0, 0.5])))
    np.testing.assert_allclose(explained.shares.sum(axis=1), explained.scores, rtol=1e-5, atol=1e-5)


def test_explaining_persona_has_the_largest_attention(model, state):
    items = np.tile(np.arange(60), (len(state), 1))
    explained = explain_recommendations(model.scorer, state, sp.csr_matrix((len(state), 60)), items)
    np.testing.assert_array_equal(explained.persona, explained.attention.argmax(axis=1))


def test_because_you_liked_items_come_from_the_users_own_history(model, state, dataset):
    histories = dataset.to_csr()[:12]
    items = np.tile(np.arange(0, 60, 6), (len(state), 1))
    explained = explain_recommendations(model.scorer, state, histories, items)
    for user, per_item in enumerate(explained.supporting):
        own = set(histories[user].indices.tolist())
        assert all(set(support) <= own and len(support) <= 3 for support in per_item)
    assert any(support for per_item in explained.supporting for support in per_item)


def test_padding_items_get_no_supporting_items(model, state, dataset):
    items = np.full((len(state), 2), -1)
    items[:, 0] = 3
    explained = explain_recommendations(model.scorer, state, dataset.to_csr()[:12], items)
    assert all(per_item[1] == [] for per_item in explained.supporting)


def test_personas_are_labelled_with_planted_tastes(model, dataset):
    """Users of one planted taste: some persona's label names it (the model has 2 personas)."""
    state = model.fold_in(dataset.to_csr())
    truth = dataset.ground_truth
    eligible = np.ones(60, bool)
    described = describe_personas(model.scorer, state, item_tag_lists(dataset.items), eligible)
    hits = [
        any(persona.label.split(" & ")[0] == f"taste-{int(truth.user_mix[user].argmax())}" for persona in personas)
        for user, personas in enumerate(described)
    ]
    assert np.mean(hits) > 0.8


def test_base_labels_come_with_exemplars_and_a_negative_pole(model, dataset):
    labels = base_labels(model.scorer, item_tag_lists(dataset.items), np.ones(60, bool), n_exemplars=4)
    assert [label.base for label in labels] == list(range(CONFIG.n_bases))
    assert all(len(label.exemplars) == 4 and label.label.startswith("taste-") for label in labels)
    assert all(label.negative_label.startswith("taste-") for label in labels)


def test_persona_descriptions_list_the_strongest_bases_by_size(model, state, dataset):
    bases = base_labels(model.scorer, item_tag_lists(dataset.items), np.ones(60, bool))
    described = describe_personas(model.scorer, state, item_tag_lists(dataset.items), np.ones(60, bool), bases, n_bases=3)
    strengths = [abs(strength) for _, strength, _ in described[0][0].bases]
    assert len(strengths) == 3 and strengths == sorted(strengths, reverse=True)


def test_item_tags_join_genres_and_tags_without_placeholders_or_case_duplicates():
    items = pl.DataFrame({"genres": [["Drama", "War"], ["(no genres listed)"]], "tags": [["war", "noir"], []]})
    assert item_tag_lists(items, min_tag_items=1) == [["Drama", "War", "noir"], []]


def test_eligible_items_need_enough_training_users():
    counts = np.array([0, 1, 5, 9] + [7] * 60)
    mask = eligible_items(counts, min_users=5)
    assert not mask[:2].any() and mask[2:].all()


def test_resolve_finds_labels_and_tags_case_insensitively():
    labels = ["Horror & Thriller", "Comedy", "Thriller & Crime"]
    assert resolve("thriller", labels, "base") == [0, 2]
    assert resolve("Comedy", labels, "base") == [1]
    assert resolve(2, labels, "base") == [2]


def test_resolve_refuses_unknown_labels_and_ids():
    with pytest.raises(ValueError, match="no base is labelled 'Western'"):
        resolve("Western", ["Comedy"], "base")
    with pytest.raises(ValueError, match="no persona 5"):
        resolve(5, ["Comedy", "Drama"], "persona")


def test_persona_weights_by_label_apply_to_users_who_have_it():
    weights = control_weights(Control(personas={"Drama": 0.0}), [["Drama", "Comedy"], ["Horror", "Comedy"]], ["War"])
    np.testing.assert_array_equal(weights.persona_weights, [[0.0, 1.0], [1.0, 1.0]])


def test_base_factors_by_label_cover_every_base_with_that_label():
    weights = control_weights(Control(bases={"Drama": 0.0, 1: 2.0}), [["Comedy"]], ["Drama", "Comedy", "Drama & War"])
    np.testing.assert_array_equal(weights.base_factors, [0.0, 2.0, 0.0])


def test_a_label_nobody_has_is_an_error():
    with pytest.raises(ValueError, match="no user's persona"):
        control_weights(Control(personas={"Western": 0.0}), [["Drama", "Comedy"]], ["War"])


def test_control_refuses_negative_weights():
    with pytest.raises(ValueError, match=">= 0"):
        Control(bases={1: -2.0})


def test_persona_mix_is_a_distribution_per_user(model, state):
    mix = persona_mix(model.scorer.terms(state), top_n=20)
    assert mix.shape == (len(state), 2)
    np.testing.assert_allclose(mix.sum(axis=1), 1.0, rtol=1e-5)


def _persona(index: int, name: str, bases=()) -> PersonaDescription:
    return PersonaDescription(index, name, [], list(bases))


def test_summary_names_labels_with_their_weights():
    text = summarize([_persona(0, "Comedy"), _persona(1, "Sci-Fi & Thriller")], np.array([0.3, 0.7]))
    assert text == "Mostly Sci-Fi & Thriller (70%), some Comedy (30%)."


def test_summary_merges_personas_with_the_same_label():
    assert summarize([_persona(0, "Drama"), _persona(1, "Drama")], np.array([0.4, 0.6])) == "Mostly Drama (100%)."


def test_summary_adds_the_main_personas_strongest_bases():
    main = _persona(0, "Drama", [(3, 0.8, "War"), (1, -0.5, "Children")])
    text = summarize([main, _persona(1, "Comedy")], np.array([0.6, 0.4]))
    assert text == "Mostly Drama (60%), some Comedy (40%). Strongest tastes: War; away from Children."


def test_summary_says_partly_and_a_little_for_small_weights():
    text = summarize([_persona(0, "Drama"), _persona(1, "Comedy"), _persona(2, "War")], np.array([0.45, 0.4, 0.15]))
    assert text == "Partly Drama (45%), some Comedy (40%), a little War (15%)."


def test_summary_needs_one_weight_per_persona():
    with pytest.raises(ValueError, match="must match"):
        summarize([_persona(0, "Drama")], np.array([0.5, 0.5]))
