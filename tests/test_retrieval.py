"""Certified candidate retrieval: equal to exhaustive scoring, and the index's persistence."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsys_pref.models.persona.scorer import ControlWeights, PersonaScorer, SharedSide
from recsys_pref.models.persona.state import PersonaState
from recsys_pref.retrieval.certified import CertifiedConfig, certified_top_k
from recsys_pref.retrieval.index import CandidateIndex, IndexConfig, IndexMismatchError


def random_case(seed: int, n_items: int, n_personas: int, coarse: bool, exclude_share: float):
    """A catalog, users and exclusions; `coarse` draws every number from {-1, -0.5, 0, 0.5, 1}
    and duplicates items, so that many scores tie exactly."""
    rng = np.random.default_rng(seed)
    d, k_bases, n_users = int(rng.integers(1, 6)), int(rng.integers(1, 5)), int(rng.integers(1, 5))

    def draw(*shape: int) -> np.ndarray:
        return rng.integers(-2, 3, shape) / 2 if coarse else rng.standard_normal(shape)

    embeddings, bias = draw(n_items, d), draw(n_items)
    if coarse and n_items > 1:
        copies = rng.integers(0, n_items, n_items // 2)
        embeddings[rng.integers(0, n_items, len(copies))] = embeddings[copies]
    catalog = SharedSide(embeddings, bias, draw(k_bases, d), float(rng.choice([0.1, 1.0, 5.0])))
    state = PersonaState(draw(n_users, n_personas, k_bases), draw(n_users, n_personas))
    exclude = sp.csr_matrix(rng.random((n_users, n_items)) < exclude_share)
    return PersonaScorer(catalog), state, exclude


#: Every supported index kind, at sizes a 16..80-item catalog can train (PQ: 16 codes per sub-vector).
FACTORIES = ["Flat", "ExactIVF4", "ExactIVF1", "HNSW8", "IVF2,Flat", "IVF2,PQ8x4fs"]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    factory=st.sampled_from(FACTORIES),
    n_items=st.integers(16, 80),
    n_personas=st.integers(1, 4),
    k=st.integers(1, 12),
    candidates=st.integers(1, 8),
    coarse=st.booleans(),
    exclude_share=st.sampled_from([0.0, 0.2, 0.9]),
    mute=st.booleans(),
)
def test_every_exact_answer_equals_exhaustive_scoring_for_every_index_kind(
        seed, factory, n_items, n_personas, k, candidates, coarse, exclude_share, mute):
    scorer, state, exclude = random_case(seed, n_items, n_personas, coarse, exclude_share)
    weights = np.ones(n_personas)
    weights[0] = 0.0 if mute and n_personas > 1 else 1.0
    weights[1:] = np.random.default_rng(seed).choice([0.5, 1.0, 2.0], n_personas - 1)
    control = ControlWeights(persona_weights=weights)
    index = CandidateIndex.build(scorer.shared.item_embeddings, scorer.shared.item_bias,
                                 IndexConfig(factory=factory, probe_share=0.5, ef_search=4),
                                 scorer.queries(state).reshape(-1, scorer.shared.item_embeddings.shape[1]))
    config = CertifiedConfig(candidates=candidates, max_candidates=max(candidates, 16), first_cells=1, first_candidates=candidates)
    result = certified_top_k(index, scorer, state, k, exclude, config, control)
    expected_ids, expected_scores = scorer.top_k(state, k, exclude, control)
    exact = result.exact
    np.testing.assert_array_equal(result.ids[exact], expected_ids[exact])
    np.testing.assert_allclose(result.scores[exact], expected_scores[exact], rtol=1e-5, atol=1e-5)
    assert exact.all() if index.exact else not result.certified.any()


def test_excluded_items_are_never_returned():
    scorer, state, _ = random_case(1, 40, 2, coarse=False, exclude_share=0)
    exhaustive_ids, _ = scorer.top_k(state, 5)
    exclude = sp.csr_matrix((np.ones(exhaustive_ids.size), (np.repeat(np.arange(len(state)), 5), exhaustive_ids.ravel())),
                            shape=(len(state), 40))
    index = CandidateIndex.build(scorer.shared.item_embeddings, scorer.shared.item_bias)
    result = certified_top_k(index, scorer, state, 5, exclude)
    for returned, excluded in zip(result.ids, exhaustive_ids):
        assert not np.isin(returned, excluded).any()


def test_users_that_fail_the_certificate_fall_back_to_exhaustive_scoring():
    scorer, state, exclude = random_case(2, 300, 3, coarse=False, exclude_share=0.1)
    index = CandidateIndex.build(scorer.shared.item_embeddings, scorer.shared.item_bias)
    result = certified_top_k(index, scorer, state, 20, exclude, CertifiedConfig(candidates=1, max_candidates=2))
    assert result.fallback.any()
    assert not (result.fallback & result.certified).any()
    assert (result.scored[result.fallback] >= scorer.shared.n_items).all()
    np.testing.assert_array_equal(result.ids, scorer.top_k(state, 20, exclude)[0])


def test_a_catalog_scored_through_the_bound_rescores_fewer_items_than_it_holds():
    rng = np.random.default_rng(0)
    catalog = SharedSide(rng.standard_normal((5000, 8)), rng.standard_normal(5000), rng.standard_normal((4, 8)), 1.0)
    state = PersonaState(rng.standard_normal((20, 2, 4)), np.zeros((20, 2)))
    index = CandidateIndex.build(catalog.item_embeddings, catalog.item_bias)
    result = certified_top_k(index, PersonaScorer(catalog), state, 10)
    assert result.certified_share == 1.0
    assert result.scored.max() < catalog.n_items / 10


def test_the_certificate_margin_grows_with_the_magnitudes_the_scores_are_summed_from():
    """Scores near 0 summed from terms near 1000: float32 error scales with |y| |x|, not |T|,
    so a gap of 0.05 above the list's bound (1e-4 x (1 + |T|) would accept it) is not proof."""
    scores = 0.5 - 0.01 * np.arange(50)  # (50,) spaced 0.01 apart, all within 0.1 of the best
    embeddings = np.stack([np.r_[scores, 0.0], np.r_[np.zeros(50), -1.0]], axis=1)  # item 50 scores -1000
    catalog = SharedSide(embeddings, np.zeros(51), np.eye(2), 1.0)
    state = PersonaState(np.array([[[1.0, 1000.0]]]), np.zeros((1, 1)))
    index = CandidateIndex.build(catalog.item_embeddings, catalog.item_bias)
    result = certified_top_k(index, PersonaScorer(catalog), state, 1, config=CertifiedConfig(candidates=2))
    assert result.ids[0, 0] == 0 and result.certified[0]
    assert result.scored[0] > 2  # the first list (gap 0.01 < margin 0.1) was widened, not certified

@pytest.mark.parametrize("factory", ["Flat", "HNSW8", "IVF4,Flat"])
def test_index_round_trips_through_its_bytes(factory):
    rng = np.random.default_rng(3)
    embeddings, bias = rng.standard_normal((300, 6)), rng.standard_normal(300)
    index = CandidateIndex.build(embeddings, bias, IndexConfig(factory=factory, probe_share=0.5))
    loaded = CandidateIndex.from_bytes(index.to_bytes(), index.metadata(), embeddings, bias)
    queries = rng.standard_normal((5, 6))
    np.testing.assert_array_equal(loaded.search(queries, 7), index.search(queries, 7))
    assert loaded.factory == factory and loaded.config == index.config


def test_an_index_built_for_other_items_is_refused():
    rng = np.random.default_rng(4)
    embeddings, bias = rng.standard_normal((50, 4)), rng.standard_normal(50)
    index = CandidateIndex.build(embeddings, bias)
    with pytest.raises(IndexMismatchError, match="other item vectors"):
        CandidateIndex.from_bytes(index.to_bytes(), index.metadata(), embeddings, bias + 1e-3)


def test_flat_search_returns_the_largest_inner_products_plus_bias():
    rng = np.random.default_rng(5)
    embeddings, bias = rng.standard_normal((100, 5)), rng.standard_normal(100)
    queries = rng.standard_normal((3, 5))
    ids = CandidateIndex.build(embeddings, bias).search(queries, 4)
    expected = np.argsort(-(queries @ embeddings.T + bias), axis=1)[:, :4]
    np.testing.assert_array_equal(ids, expected)


def test_approximate_indexes_search_the_l2_transform_of_the_inner_product():
    rng = np.random.default_rng(6)
    embeddings = rng.standard_normal((400, 6)) * rng.uniform(0.2, 3, (400, 1))  # varied norms
    bias = rng.standard_normal(400)
    queries = rng.standard_normal((10, 6))
    ids = CandidateIndex.build(embeddings, bias, IndexConfig(factory="HNSW16", ef_search=400)).search(queries, 5)
    expected = np.argsort(-(queries @ embeddings.T + bias), axis=1)[:, :5]
    assert np.mean([len(set(a) & set(b)) / 5 for a, b in zip(ids, expected)]) > 0.95


@pytest.mark.parametrize(
    "embeddings, bias, message",
    [
        (np.zeros((3, 2)), np.zeros(4), "expected"),
        (np.full((3, 2), np.nan), np.zeros(3), "NaN"),
        (np.zeros((0, 2)), np.zeros(0), "empty"),
    ],
)
def test_bad_item_vectors_are_rejected_with_the_problem_named(embeddings, bias, message):
    with pytest.raises(ValueError, match=message):
        CandidateIndex.build(embeddings, bias)


def test_an_unknown_factory_string_is_rejected():
    with pytest.raises(ValueError, match="cannot build index"):
        CandidateIndex.build(np.zeros((10, 2)), np.zeros(10), IndexConfig(factory="NoSuchIndex"))


def test_exclusions_of_the_wrong_shape_are_rejected():
    scorer, state, _ = random_case(7, 20, 2, coarse=False, exclude_share=0)
    index = CandidateIndex.build(scorer.shared.item_embeddings, scorer.shared.item_bias)
    with pytest.raises(ValueError, match="exclude has shape"):
        certified_top_k(index, scorer, state, 3, sp.csr_matrix((len(state), 19)))


def test_auto_factory_is_flat_for_small_catalogs_and_exact_ivf_for_large_ones():
    config = IndexConfig(flat_max_items=1000)
    assert config.resolve(1000) == "Flat"
    assert config.resolve(1001) == "ExactIVF128"
