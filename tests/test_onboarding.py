"""Onboarding by questions: posterior, question selection, session state, oracles, CLI and bench."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from recsys_pref.onboarding.oracles import ModelOracle, ProfileOracle
from recsys_pref.cli import main
from recsys_pref.data.dataset import IdMap
from recsys_pref.data.synthetic import make_synthetic
from recsys_pref.models.persona import PersonaConfig, PersonaRecommender, PersonaState
from recsys_pref.models.persona.scorer import SharedSide
from recsys_pref.onboarding.posterior import Posterior, StateSpace
from recsys_pref.onboarding.questions import QuestionConfig, select_question
from recsys_pref.onboarding.session import (
    OnboardingConfig,
    OnboardingError,
    Onboarder,
    OnboardingState,
    build_onboarder,
)
from recsys_pref.pipeline import PersonaPipeline

SMALL = dict(n_bases=8, embedding_dim=8, hidden_dim=32, max_epochs=3, progress=False)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def synthetic():
    return make_synthetic(n_users=300, n_items=120, n_personas=3, seed=0)


@pytest.fixture(scope="module")
def model(synthetic):
    return PersonaRecommender(PersonaConfig.preset("persona", **SMALL)).fit(synthetic.to_csr())


def onboarder_for(model, synthetic, **questions):
    config = OnboardingConfig(QuestionConfig(pool_size=40, **questions), max_questions=5)
    return build_onboarder(model, synthetic.to_csr(), synthetic.item_ids, config, synthetic.items)


def hand_built_space(rewards: np.ndarray) -> StateSpace:
    """M = 1 over identity bases (K = d = 2): item rewards are the given rows, biases 0, and a
    prior of states spread as N(0, I) over the two coefficients."""
    config = PersonaConfig.preset("amp-cf", n_personas=1, embedding_dim=2, progress=False)
    shared = SharedSide(rewards, np.zeros(len(rewards)), np.eye(2), config.temperature)
    draws = np.random.default_rng(0).standard_normal((4000, 1, 2))
    prior = PersonaState(draws, np.random.default_rng(1).standard_normal((4000, 1)))
    model = PersonaRecommender(config)
    model.n_items = len(rewards)
    model._set_fitted(shared, PersonaState(np.zeros((1, 1, 2)), np.zeros((1, 1))))
    return StateSpace(model, prior)


def test_posterior_concentrates_on_the_planted_state_as_answers_accumulate():
    """A user with planted coefficients over two bases answers random pairs of 40 items by
    Bradley-Terry draws from their true scores: the posterior mean approaches the planted
    coefficients and the posterior variance shrinks."""
    rng = np.random.default_rng(1)
    rewards = 2 * rng.standard_normal((40, 2))
    space = hand_built_space(rewards)
    config = OnboardingConfig(QuestionConfig(question_type="pair", strategy="random"), max_questions=80)
    onboarder = Onboarder(space, np.arange(40), IdMap(np.arange(40), "item"), config)
    planted = np.array([1.5, -1.0])  # coefficients c
    truth = rewards @ planted
    state = onboarder.start()

    def error() -> float:
        return float(np.linalg.norm(space.persona_state(np.array(state.mean)).coefficients[0, 0] - planted))

    distance, variance = {0: error()}, {0: np.trace(np.array(state.covariance))}
    for n in range(1, 81):
        i, j = onboarder.next_question_indices(state)
        onboarder.answer_index(state, i if rng.random() < 1 / (1 + np.exp(truth[j] - truth[i])) else j)
        if n in (10, 80):
            distance[n], variance[n] = error(), np.trace(np.array(state.covariance))
    assert distance[80] < distance[10] < distance[0]
    assert distance[80] < 0.25 * distance[0]
    assert variance[80] < variance[10] < variance[0]


def test_pair_selection_picks_the_analytically_most_informative_pair():
    rewards = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0], [0.2, 0.1], [-0.5, 0.5]])
    space = hand_built_space(rewards)
    posterior = Posterior.prior(space.rank)
    sigma = space.basis.numpy()[:2] @ space.basis.numpy()[:2].T  # covariance of the coefficients
    values = {}
    for i, j in itertools.combinations(range(len(rewards)), 2):
        g = rewards[i] - rewards[j]  # scores are <c, r(i)>, so the gradient of s_i - s_j is r(i) - r(j)
        d = (rewards[i] - rewards[j]) @ space.mean.numpy()[:2]
        p = 1 / (1 + np.exp(-d))
        values[(i, j)] = p * (1 - p) * g @ sigma @ g
    best = max(values, key=values.get)
    chosen = select_question(space, posterior, np.arange(len(rewards)), set(), set(), set(),
                             QuestionConfig(question_type="pair", use_answerability=False), 1.0,
                             np.random.default_rng(0))
    assert tuple(sorted(chosen)) == best == (1, 2)


@pytest.mark.parametrize("strategy", ["adaptive", "random", "popular"])
def test_no_question_is_ever_repeated(model, synthetic, strategy):
    onboarder = onboarder_for(model, synthetic, question_type="pair", strategy=strategy)
    onboarder.config = OnboardingConfig(onboarder.config.questions, max_questions=25)
    state = onboarder.start()
    for _ in range(25):
        items = onboarder.next_question_indices(state)
        onboarder.answer_index(state, items[0])
    assert len({frozenset(items) for items in state.questions}) == 25


def test_state_round_trips_through_json_and_resumes_identically(model, synthetic):
    onboarder = onboarder_for(model, synthetic)
    state = onboarder.start()
    for _ in range(2):
        items = onboarder.next_question(state)
        onboarder.answer(state, items[1])
    onboarder.next_question(state)
    restored = OnboardingState.from_json(json.loads(json.dumps(state.to_json())))
    assert restored == state
    assert onboarder.next_question(restored) == onboarder.next_question(state)  # the pending question
    onboarder.answer(state, "none")
    onboarder.answer(restored, "none")
    assert onboarder.next_question(restored) == onboarder.next_question(state)


def test_malformed_state_json_is_rejected_with_a_clear_error():
    with pytest.raises(ValueError, match="not an onboarding state"):
        OnboardingState.from_json('{"version": 1, "mean": [0.0]}')


def test_answer_with_an_unknown_item_is_an_error(model, synthetic):
    onboarder = onboarder_for(model, synthetic)
    state = onboarder.start()
    onboarder.next_question(state)
    with pytest.raises(OnboardingError, match="not an item of this model"):
        onboarder.answer(state, 10_000)


def test_answer_with_an_item_not_shown_is_an_error(model, synthetic):
    onboarder = onboarder_for(model, synthetic)
    state = onboarder.start()
    shown = onboarder.next_question(state)
    other = next(item for item in synthetic.item_ids.to_list() if item not in shown)
    with pytest.raises(OnboardingError, match="was not shown"):
        onboarder.answer(state, other)


def test_answer_without_a_pending_question_is_an_error(model, synthetic):
    onboarder = onboarder_for(model, synthetic)
    with pytest.raises(OnboardingError, match="call next_question first"):
        onboarder.answer(onboarder.start(), "none")


def test_a_tie_is_not_an_answer_to_a_choice_question(model, synthetic):
    onboarder = onboarder_for(model, synthetic)
    state = onboarder.start()
    onboarder.next_question(state)
    with pytest.raises(OnboardingError, match="use 'none'"):
        onboarder.answer(state, "tie")


def test_a_finished_onboarding_takes_no_more_questions_or_answers(model, synthetic):
    onboarder = onboarder_for(model, synthetic)
    state = onboarder.start()
    for _ in range(5):
        onboarder.next_question(state)
        onboarder.answer(state, "unknown")
    with pytest.raises(OnboardingError, match="finished"):
        onboarder.next_question(state)
    with pytest.raises(OnboardingError, match="finished"):
        onboarder.answer(state, "none")


def test_dont_know_leaves_the_posterior_unchanged_and_drops_the_items(model, synthetic):
    onboarder = onboarder_for(model, synthetic)
    state = onboarder.start()
    first = onboarder.next_question_indices(state)
    onboarder.answer_index(state, "unknown")
    assert state.mean == onboarder.start().mean
    assert not set(first) & set(onboarder.next_question_indices(state))


def test_recommendations_name_the_persona_each_item_satisfies(model, synthetic):
    onboarder = onboarder_for(model, synthetic)
    state = onboarder.start()
    items = onboarder.next_question(state)
    onboarder.answer(state, items[0])
    frame = onboarder.recommend(state, k=5)
    assert frame.height == 5 and items[0] not in frame["item_id"].to_list()
    assert set(frame["persona_label"].to_list()) <= set(onboarder.persona_labels(state))
    assert abs(sum(share for _, share in onboarder.persona_mix(state)) - 1) < 1e-5


def test_profile_oracle_compares_ratings_and_knows_only_rated_items():
    oracle = ProfileOracle({1: 5.0, 2: 3.0, 3: 5.0, 4: 2.0}, threshold=4.0)
    assert oracle([1, 2], "pair") == 1
    assert oracle([1, 3], "pair") == "tie"
    assert oracle([9, 3], "pair") == 3  # an unrated item against a rated positive
    assert oracle([9, 4], "pair") == "unknown"  # an unrated item against a rated non-positive
    assert oracle([2, 9, 1], "choice") == 1
    assert oracle([2, 4, 9], "choice") == "none"
    assert oracle([7, 8, 9], "choice") == "unknown"


def test_model_oracle_answers_none_below_its_none_level():
    oracle = ModelOracle(np.array([0.0, 2.0, 1.0]), none_level=1.5)
    assert oracle([0, 2], "choice") == "none"
    assert oracle([0, 1], "choice") == 1
    assert oracle([0, 2], "pair") == 2


def test_onboard_command_asks_then_prints_recommendations_and_the_mix(synthetic, tmp_path, monkeypatch, capsys):
    pipeline = PersonaPipeline.fit(synthetic, PersonaConfig.preset("persona", **SMALL))
    pipeline.save(tmp_path / "model")
    replies = iter(["x", "1", "=", "?", "2", "q"])
    monkeypatch.setattr("builtins.input", lambda prompt: next(replies))
    code = main(["onboard", "--model", str(tmp_path / "model"), "--questions", "5", "--k", "3",
                 "--state-out", str(tmp_path / "state.json")])
    out = capsys.readouterr().out
    assert code == 0
    assert "please type a number" in out and "Question 5 of 5" in out
    assert "Your recommendations after 4 answers" in out and "Your taste mix:" in out and "taste-" in out
    assert len(OnboardingState.from_json((tmp_path / "state.json").read_text()).answers) == 4


def test_bench_onboarding_quick_writes_every_row_kind(tmp_path):
    code = main(["bench", "onboarding", "--dataset", "synthetic", "--out", str(tmp_path), "--quick"])
    assert code == 0
    rows = json.loads((tmp_path / "onboarding.json").read_text())["rows"]
    strategies = {row["strategy"] for row in rows}
    assert {"learned-tree", "adaptive", "random", "popular-pairs", "popularity", "fold-in-full", "ease-known",
            "persona-known", "latency"} <= strategies
    runs = [row for row in rows if row["strategy"] == "adaptive"]
    assert {(row["question_type"], row["oracle"]) for row in runs} == set(
        itertools.product(("pair", "choice"), ("profile", "model (upper bound)")))
    assert all(0 <= row["ndcg@10"] <= 1 and "mix_tv" in row for row in runs)
    assert all(row["selection_ms"] > 0 for row in rows if row["strategy"] == "latency")


def test_ids_of_the_onboarder_must_match_the_model(model, synthetic):
    with pytest.raises(ValueError, match="item_ids has"):
        onboarder = onboarder_for(model, synthetic)
        type(onboarder)(onboarder.space, onboarder.pool, IdMap(np.arange(3), "item"))


def test_full_shrinkage_keeps_an_onboarded_user_at_the_population_prior(synthetic):
    """The model's state bounds hold in onboarding as in fold-in: with shrinkage 1 every
    answer leaves the scores at the empty-history prior's (the answers carry no information
    about a state that is always the prior, so the posterior may not even move)."""
    config = PersonaConfig.preset("persona", state_shrinkage=1.0, **SMALL)
    shrunk = PersonaRecommender(config).fit(synthetic.to_csr())
    onboarder = onboarder_for(shrunk, synthetic, question_type="pair")
    state = onboarder.start()
    before, _ = onboarder.scores_and_attention([state])
    for _ in range(3):
        onboarder.answer_index(state, onboarder.next_question_indices(state)[0])
    after, _ = onboarder.scores_and_attention([state])
    np.testing.assert_allclose(after, before, atol=1e-9)


def test_a_state_json_that_is_not_an_object_is_rejected_with_a_clear_error():
    with pytest.raises(ValueError, match="not an onboarding state"):
        OnboardingState.from_json("[1, 2, 3]")


def test_a_state_with_a_non_finite_mean_is_rejected(model, synthetic):
    state = onboarder_for(model, synthetic).start()
    document = json.loads(state.to_json())
    document["mean"][0] = None
    with pytest.raises(ValueError, match="not an onboarding state|finite"):
        OnboardingState.from_json(json.dumps(document))


def test_a_state_showing_items_outside_the_catalog_is_rejected(model, synthetic):
    onboarder = onboarder_for(model, synthetic, question_type="pair")
    state = onboarder.start()
    state.questions.append([0, 10_000])
    with pytest.raises(ValueError, match="outside this model's catalog"):
        onboarder.next_question(state)


def test_the_posteriors_scores_are_the_scorers(model, synthetic):
    """Onboarding differentiates the score in float64; its values are the one scorer's."""
    space = onboarder_for(model, synthetic).space
    z = torch.from_numpy(np.random.default_rng(0).standard_normal((3, space.rank)))
    scores, attention = space.scores_at(z)
    for row in range(3):
        state = space.persona_state(z[row].numpy())
        terms = model.scorer.terms(state)
        np.testing.assert_allclose(scores[row].numpy(), terms.scores[0], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(attention[row].numpy(), terms.attention[0], rtol=1e-5, atol=1e-5)
