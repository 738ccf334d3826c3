"""The one scorer: its equations, control weights, bounds, and every serving path agreeing with it."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys_pref.explain.attribution import explain_recommendations
from recsys_pref.models.persona.scorer import ControlWeights, PersonaScorer, SharedSide
from recsys_pref.models.persona.state import PersonaState
from recsys_pref.retrieval.certified import CertifiedConfig, certified_top_k
from recsys_pref.retrieval.index import CandidateIndex, IndexConfig


def random_scorer(rng: np.random.Generator, n_items: int, n_bases: int, dim: int) -> PersonaScorer:
    return PersonaScorer(SharedSide(rng.normal(size=(n_items, dim)), rng.normal(size=n_items),
                                    rng.normal(size=(n_bases, dim)) / np.sqrt(dim), float(rng.choice([0.2, 1.0, 4.0]))))


def random_state(rng: np.random.Generator, n_users: int, n_personas: int, n_bases: int) -> PersonaState:
    return PersonaState(rng.normal(size=(n_users, n_personas, n_bases)), rng.normal(size=(n_users, n_personas)))


def reference_scores(scorer: PersonaScorer, state: PersonaState, persona_weights: np.ndarray | None = None,
                     base_factors: np.ndarray | None = None) -> np.ndarray:
    """DESIGN.md's equations written out in float64 numpy, independently of the scorer."""
    shared = scorer.shared
    rewards = shared.item_embeddings.astype(np.float64) @ shared.bases.T.astype(np.float64)  # (n_items, K)
    coefficients = state.coefficients.astype(np.float64)
    if base_factors is not None:
        coefficients = coefficients * base_factors
    rho = np.einsum("umk,ik->umi", coefficients, rewards)
    logits = rho / shared.temperature + state.prior_logits[:, :, None]
    if persona_weights is not None:
        with np.errstate(divide="ignore"):
            logits = logits + np.log(persona_weights)[:, :, None]
    logits -= logits.max(axis=1, keepdims=True)
    attention = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return (attention * rho).sum(axis=1) + shared.item_bias


def test_scores_follow_the_equations():
    rng = np.random.default_rng(0)
    scorer, state = random_scorer(rng, 40, 5, 6), random_state(rng, 3, 2, 5)
    np.testing.assert_allclose(scorer.scores(state), reference_scores(scorer, state), rtol=1e-5, atol=1e-5)


def test_terms_reproduce_scores_and_attention_sums_to_one():
    rng = np.random.default_rng(1)
    scorer, state = random_scorer(rng, 30, 4, 4), random_state(rng, 4, 3, 4)
    terms = scorer.terms(state)
    np.testing.assert_allclose(terms.scores, scorer.scores(state), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(terms.attention.sum(axis=1), 1.0, rtol=1e-6)


def test_score_shares_sum_to_the_score():
    rng = np.random.default_rng(2)
    scorer, state = random_scorer(rng, 30, 4, 4), random_state(rng, 4, 3, 4)
    terms = scorer.terms(state)
    np.testing.assert_allclose(terms.shares.sum(axis=1), terms.scores, rtol=1e-5, atol=1e-5)


def test_chosen_items_score_as_in_the_whole_catalog():
    rng = np.random.default_rng(3)
    scorer, state = random_scorer(rng, 30, 4, 4), random_state(rng, 4, 2, 4)
    items = rng.integers(0, 30, size=(4, 7))
    np.testing.assert_allclose(scorer.scores(state, items), np.take_along_axis(scorer.scores(state), items, axis=1),
                               rtol=1e-6, atol=1e-6)


def test_muting_a_persona_zeroes_its_attention_everywhere():
    rng = np.random.default_rng(4)
    scorer, state = random_scorer(rng, 30, 4, 4), random_state(rng, 3, 2, 4)
    terms = scorer.terms(state, control=ControlWeights(persona_weights=np.array([0.0, 1.0])))
    assert (terms.attention[:, 0] == 0).all()
    np.testing.assert_allclose(terms.scores, terms.rho[:, 1] + terms.bias, rtol=1e-6, atol=1e-6)


def test_boosting_a_persona_raises_its_attention():
    rng = np.random.default_rng(5)
    scorer, state = random_scorer(rng, 30, 4, 4), random_state(rng, 3, 2, 4)
    plain = scorer.terms(state).attention[:, 0]
    boosted = scorer.terms(state, control=ControlWeights(persona_weights=np.array([4.0, 1.0]))).attention[:, 0]
    assert (boosted >= plain - 1e-7).all() and (boosted > plain).any()


def test_base_factors_scale_every_personas_coefficient_on_that_base():
    rng = np.random.default_rng(6)
    scorer, state = random_scorer(rng, 30, 3, 4), random_state(rng, 2, 2, 3)
    factors = np.array([0.0, 2.0, 1.0])
    edited = PersonaState(state.coefficients * factors, state.prior_logits)
    np.testing.assert_allclose(scorer.scores(state, control=ControlWeights(base_factors=factors)),
                               scorer.scores(edited), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "control, message",
    [(ControlWeights(persona_weights=np.array([0.0, 0.0])), "every persona"),
     (ControlWeights(persona_weights=np.array([-1.0, 1.0])), ">= 0"),
     (ControlWeights(persona_weights=np.array([np.nan, 1.0])), "finite"),
     (ControlWeights(persona_weights=np.ones(3)), "shape"),
     (ControlWeights(base_factors=np.ones(7)), "shape")],
)
def test_bad_control_weights_are_refused(control, message):
    rng = np.random.default_rng(7)
    scorer, state = random_scorer(rng, 10, 3, 4), random_state(rng, 2, 2, 3)
    with pytest.raises(ValueError, match=message):
        scorer.scores(state, control=control)


def test_items_outside_the_catalog_are_refused():
    rng = np.random.default_rng(8)
    scorer, state = random_scorer(rng, 10, 3, 4), random_state(rng, 2, 2, 3)
    with pytest.raises(ValueError, match="item indices"):
        scorer.scores(state, np.full((2, 1), 10))


def test_a_state_with_the_wrong_number_of_bases_is_refused():
    rng = np.random.default_rng(9)
    scorer = random_scorer(rng, 10, 3, 4)
    with pytest.raises(ValueError, match="K = 5"):
        scorer.scores(random_state(rng, 2, 2, 5))


def test_upper_bounds_bound_every_score_and_ignore_muted_personas():
    rng = np.random.default_rng(10)
    scorer, state = random_scorer(rng, 40, 4, 5), random_state(rng, 3, 3, 4)
    control = ControlWeights(persona_weights=np.array([1.0, 0.0, 2.0]))
    everything = np.broadcast_to(np.arange(40), (3, 3, 40))
    bounds = scorer.upper_bounds(state, everything, control)  # (3, M, 40)
    assert np.isneginf(bounds[:, 1]).all()
    assert (scorer.scores(state, control=control) <= bounds.max(axis=1) + 1e-5).all()


def test_top_k_batches_agree_with_one_batch(monkeypatch):
    rng = np.random.default_rng(11)
    scorer, state = random_scorer(rng, 50, 4, 4), random_state(rng, 9, 2, 4)
    whole = scorer.top_k(state, 5)
    monkeypatch.setattr("recsys_pref.models.persona.scorer.SCORE_FLOATS", 100)  # two users per block
    np.testing.assert_array_equal(scorer.top_k(state, 5)[0], whole[0])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n_personas=st.integers(1, 4), muted=st.booleans())
def test_every_serving_path_agrees_with_the_scorer(seed, n_personas, muted):
    """Property: exhaustive top-k, certified retrieval over a Flat index, explanations and the
    equations all give the scorer's scores (1e-6 relative to the score's scale)."""
    rng = np.random.default_rng(seed)
    scorer, state = random_scorer(rng, 60, 5, 6), random_state(rng, 4, n_personas, 5)
    weights = np.ones(n_personas)
    if muted and n_personas > 1:
        weights[rng.integers(n_personas)] = 0.0
    control = ControlWeights(persona_weights=weights)
    scores = scorer.scores(state, control=control)
    scale = 1.0 + np.abs(scores).max()
    np.testing.assert_allclose(scores, reference_scores(scorer, state, np.broadcast_to(weights, (4, n_personas))),
                               atol=1e-6 * scale * 10)
    ids, values = scorer.top_k(state, 5, control=control)
    np.testing.assert_allclose(values, np.take_along_axis(scores, ids, axis=1), atol=1e-6 * scale)
    index = CandidateIndex.build(scorer.shared.item_embeddings, scorer.shared.item_bias, IndexConfig(factory="Flat"))
    certified = certified_top_k(index, scorer, state, 5, None, CertifiedConfig(candidates=4), control)
    np.testing.assert_array_equal(certified.ids[certified.certified], ids[certified.certified])
    np.testing.assert_allclose(certified.scores, values, atol=1e-6 * scale)
    explained = explain_recommendations(scorer, state, sp.csr_matrix((4, 60)), ids, control)
    np.testing.assert_allclose(explained.scores, values, atol=1e-6 * scale)
    np.testing.assert_allclose(explained.shares.sum(axis=1), values, atol=1e-5 * scale)
