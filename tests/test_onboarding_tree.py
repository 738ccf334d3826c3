"""The learned interview (issue 12): the tree, its answer model and metric, sessions that follow it."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp

from recsys_pref.core.metrics import ndcg_at_k
from recsys_pref.data.synthetic import make_synthetic
from recsys_pref.models.persona import PersonaConfig, PersonaRecommender
from recsys_pref.onboarding.oracles import ProfileOracle
from recsys_pref.onboarding.questions import QuestionConfig
from recsys_pref.onboarding.session import OnboardingConfig, OnboardingError, OnboardingState, build_onboarder
from recsys_pref.onboarding.tree import (
    NONE_ANSWER, UNKNOWN_ANSWER, Interviewees, InterviewTree, TreeConfig, TreeError, binary_preference, choice_answers,
    grow_tree, ndcg_matrix,
)

SMALL = dict(n_bases=8, embedding_dim=8, max_epochs=3, progress=False)
TRAINING_USERS = 400
TREE = TreeConfig(min_users=8, pool_size=40, max_depth=6)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def planted():
    """500 users with one planted taste each (4 tastes), 150 items; the first 400 users train."""
    return make_synthetic(n_users=500, n_items=150, n_personas=4, personas_per_user=1, density=0.08, seed=2)


@pytest.fixture(scope="module")
def train(planted):
    matrix = planted.to_csr()
    keep = sp.diags((np.arange(matrix.shape[0]) < TRAINING_USERS).astype(np.float32))
    return (keep @ matrix).tocsr()


@pytest.fixture(scope="module")
def model(train):
    return PersonaRecommender(PersonaConfig.preset("persona", **SMALL)).fit(train)


@pytest.fixture(scope="module")
def tree(model, train):
    rows = train[:TRAINING_USERS]
    preference, threshold = binary_preference(rows, rows)
    people = Interviewees.from_training(rows, preference, threshold, 0.2, np.random.default_rng(0))
    return grow_tree(model, people, np.asarray(train.sum(axis=0)).ravel() > 0, TREE, progress=False)


def onboarder(model, planted, train, tree=None, strategy="adaptive", questions=10):
    config = OnboardingConfig(QuestionConfig(strategy=strategy, pool_size=60), max_questions=questions)
    return build_onboarder(model, train, planted.item_ids, config, planted.items, tree=tree)


def oracle_of(planted, user):
    row = planted.to_csr()[user]
    return ProfileOracle({int(item): 1.0 for item in row.indices}, threshold=1.0)


def interview(onboarder, oracle, questions):
    state = onboarder.start()
    for _ in range(questions):
        items = onboarder.next_question_indices(state)
        kinds = onboarder.is_kind_question(state)
        onboarder.answer_index(state, oracle.kind(items, onboarder.tree.kind_items) if kinds else oracle(items, "choice"))
    return state


def test_choice_answers_are_the_profile_oracles():
    rng = np.random.default_rng(0)
    ratings = np.where(rng.random((200, 4)) < 0.5, rng.integers(1, 6, (200, 4)).astype(float), 0.0)
    codes = choice_answers(ratings, threshold=4.0)
    for row, code in zip(ratings, codes):
        oracle = ProfileOracle({item: value for item, value in enumerate(row) if value > 0}, threshold=4.0)
        expected = oracle([0, 1, 2, 3], "choice")
        assert code == {"none": NONE_ANSWER, "unknown": UNKNOWN_ANSWER}.get(expected, expected)


def test_ndcg_matrix_agrees_with_the_metrics_module():
    rng = np.random.default_rng(1)
    scores = rng.standard_normal((3, 30))
    exclude = rng.random((5, 30)) < 0.2
    targets = (rng.random((5, 30)) < 0.2) & ~exclude
    targets[:, 0] |= ~targets.any(axis=1)
    exclude[:, 0] &= False
    result = ndcg_matrix(scores, exclude, targets)
    for c in range(3):
        ranked = np.where(exclude, -np.inf, scores[c][None])
        top = np.argsort(-ranked, axis=1, kind="stable")[:, :10]
        expected = ndcg_at_k(top, sp.csr_matrix(targets), 10)
        np.testing.assert_allclose(result[:, c], expected, atol=1e-12)


def test_the_tree_recovers_planted_tastes_more_often_than_random_questions(model, planted, train, tree):
    """Held-out users (never seen by the model or the tree) answer 10 questions; the planted
    taste is recovered when it is the most common taste among the top-10 recommendations."""
    tags = planted.ground_truth.item_tags
    users = np.arange(TRAINING_USERS, planted.n_users)
    truth = planted.ground_truth.user_mix.argmax(axis=1)

    def recovered(policy) -> float:
        hits = []
        for user in users:
            state = interview(policy, oracle_of(planted, user), 10)
            top = policy.recommend(state, k=10)["item_id"].to_list()
            top_taste = Counter(tags[int(item)] for item in planted.item_ids.to_index(np.array(top))).most_common(1)[0][0]
            hits.append(top_taste == f"taste-{truth[user]}")
        return float(np.mean(hits))

    learned, random = recovered(onboarder(model, planted, train, tree)), recovered(
        onboarder(model, planted, train, strategy="random"))
    assert learned > random


def test_a_saved_tree_round_trips(tree, model, tmp_path):
    loaded = InterviewTree.load(tree.save(tmp_path / "tree.json"), model)
    assert loaded == tree and loaded.identity == tree.identity


def test_a_tree_grown_for_another_model_is_refused(tree, train):
    other = PersonaRecommender(PersonaConfig.preset("persona", **(SMALL | {"seed": 1}))).fit(train)
    with pytest.raises(TreeError, match="grown for model"):
        InterviewTree.from_json(tree.to_json(), other)


@pytest.mark.parametrize("text", ["", '{"version": 1, "nodes"', '{"version": 99}', "[]"])
def test_a_truncated_or_foreign_tree_file_is_refused(text):
    with pytest.raises(TreeError):
        InterviewTree.from_json(text)


def test_a_resumed_session_asks_the_same_next_question(model, planted, train, tree):
    policy = onboarder(model, planted, train, tree)
    oracle = oracle_of(planted, TRAINING_USERS)
    state = interview(policy, oracle, 3)
    resumed = OnboardingState.from_json(state.to_json())
    assert resumed.path == state.path
    assert policy.next_question_indices(resumed) == policy.next_question_indices(state)


def test_no_question_repeats_an_item(model, planted, train, tree):
    policy = onboarder(model, planted, train, tree, questions=14)  # 56 items at most, the pool has 60
    for user in range(TRAINING_USERS, TRAINING_USERS + 5):
        state = interview(policy, oracle_of(planted, user), 14)
        shown = [item for position, items in enumerate(state.questions) if position not in state.kinds
                 for item in items]
        assert len(shown) == len(set(shown))


def test_the_tree_asks_first_and_records_its_path(model, planted, train, tree):
    policy = onboarder(model, planted, train, tree)
    state = policy.start()
    assert policy.next_question_indices(state) == list(tree.nodes[0].options) and state.path == [0]



def test_before_the_first_answer_a_tree_session_ranks_the_popular_list(model, planted, train, tree):
    policy = onboarder(model, planted, train, tree)
    popularity = np.asarray(train.sum(axis=0)).ravel()
    top = policy.recommend(policy.start(), k=5)["item_id"].to_list()
    expected = planted.item_ids.to_external(np.argsort(-popularity, kind="stable")[:5]).tolist()
    assert top == expected


def test_after_an_answer_a_tree_session_ranks_by_its_fold_in(model, planted, train, tree):
    policy = onboarder(model, planted, train, tree)
    state = interview(policy, oracle_of(planted, TRAINING_USERS), 1)
    np.testing.assert_array_equal(policy.ranking_scores([state]), policy.scores_and_attention([state])[0])

@pytest.fixture()
def pending(model, planted, train, tree):
    """An onboarder and a state with one answered question and one pending item question."""
    policy = onboarder(model, planted, train, tree, strategy="random")
    state = policy.start()
    while True:
        policy.next_question_indices(state)
        if not policy.is_kind_question(state):
            return policy, state
        policy.answer_index(state, "none")


def test_an_answer_naming_an_item_not_offered_leaves_the_session_unchanged(pending):
    policy, state = pending
    before = state.to_json()
    offered = set(state.pending)
    other = next(item for item in range(policy.space.n_items) if item not in offered)
    with pytest.raises(OnboardingError, match="was not shown"):
        policy.answer_index(state, other)
    assert state.to_json() == before


@pytest.mark.parametrize("index", [-1, 10**6])
def test_an_out_of_range_index_leaves_the_session_unchanged(pending, index):
    policy, state = pending
    before = state.to_json()
    with pytest.raises(OnboardingError, match="not an item index"):
        policy.answer_index(state, index)
    assert state.to_json() == before


def test_a_state_from_another_tree_version_is_refused(model, planted, train, tree):
    state = onboarder(model, planted, train, tree).start()
    regrown = replace(tree, config=replace(tree.config, seed=tree.config.seed + 1))
    with pytest.raises(OnboardingError, match="interview tree"):
        onboarder(model, planted, train, regrown).next_question_indices(state)


def test_a_state_from_another_model_is_refused(model, planted, train, tree):
    state = onboarder(model, planted, train, tree).start()
    other = PersonaRecommender(PersonaConfig.preset("persona", **(SMALL | {"seed": 1}))).fit(train)
    with pytest.raises(OnboardingError, match="model"):
        onboarder(other, planted, train).next_question_indices(state)


def test_a_state_whose_path_does_not_follow_the_tree_is_refused(model, planted, train, tree):
    policy = onboarder(model, planted, train, tree)
    state = interview(policy, oracle_of(planted, TRAINING_USERS), 2)
    data = json.loads(state.to_json())
    data["path"] = [0, 0]
    with pytest.raises(OnboardingError, match="path"):
        policy.next_question_indices(OnboardingState.from_json(json.dumps(data)))


def test_a_truncated_state_is_refused_with_a_clear_error(model, planted, train, tree):
    text = interview(onboarder(model, planted, train, tree), oracle_of(planted, TRAINING_USERS), 2).to_json()
    with pytest.raises(ValueError, match="not an onboarding state"):
        OnboardingState.from_json(text[: len(text) // 2])
