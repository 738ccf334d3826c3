"""Exact top-K and persona top items through the norm-ordered prefix (retrieval.norm_order)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import scipy.sparse as sp

from recsys_pref.explain.labels import _top
from recsys_pref.models.persona.scorer import ControlWeights, PersonaScorer, SharedSide
from recsys_pref.models.persona.state import PersonaState
from recsys_pref.retrieval.norm_order import NormOrder, PersonaTopItems, norm_order_top_k
from recsys_pref.retrieval.serving import RetrievalConfig, Retriever


def heavy_tailed_case(seed: int = 0, n_items: int = 3000, n_users: int = 40, bias: float = 0.1):
    """Items in 8 dimensions whose norms are heavy-tailed (a few large, most small), as ALS
    embeddings of rarely seen items are; M = 2 personas with random coefficients."""
    rng = np.random.default_rng(seed)
    directions = rng.standard_normal((n_items, 8))
    norms = rng.pareto(1.5, n_items)[:, None] * 0.1
    shared = SharedSide(directions / np.linalg.norm(directions, axis=1, keepdims=True) * norms,
                        rng.standard_normal(n_items) * bias, rng.standard_normal((8, 8)) / 3, 0.1)
    return PersonaScorer(shared), PersonaState(rng.standard_normal((n_users, 2, 8)), rng.standard_normal((n_users, 2)))


def random_exclude(n_users: int, n_items: int, seed: int = 1) -> sp.csr_matrix:
    return sp.random(n_users, n_items, density=0.01, format="csr", random_state=seed, dtype=np.float32)


def test_norm_ordered_top_k_equals_exhaustive_scoring_while_scoring_a_short_prefix():
    scorer, state = heavy_tailed_case()
    exclude = random_exclude(len(state), scorer.shared.n_items)
    ids, scores, served, lengths = norm_order_top_k(NormOrder.of(scorer.shared), scorer, state, 10, exclude, seed=64)
    expected_ids, expected_scores = scorer.top_k(state, 10, exclude)
    assert served.all()
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5)
    assert lengths.mean() < scorer.shared.n_items / 4


def test_norm_ordered_top_k_honours_control_weights():
    scorer, state = heavy_tailed_case(2)
    control = ControlWeights(persona_weights=np.array([0.0, 1.0]), base_factors=np.linspace(0, 2, 8))
    ids, _, served, _ = norm_order_top_k(NormOrder.of(scorer.shared), scorer, state, 10, control=control, seed=64)
    np.testing.assert_array_equal(ids[served], scorer.top_k(state, 10, control=control)[0][served])


def test_users_whose_prefix_is_too_long_are_left_to_the_caller():
    scorer, state = heavy_tailed_case(3)
    _, _, served, lengths = norm_order_top_k(NormOrder.of(scorer.shared), scorer, state, 10, seed=16, max_share=0.02)
    assert not served.all()
    assert (lengths[~served] > 0.02 * scorer.shared.n_items).all()


def test_every_item_after_a_prefix_is_bounded_below_the_bar():
    scorer, _ = heavy_tailed_case(4)
    order = NormOrder.of(scorer.shared)
    query_norms, bars = np.array([0.5, 2.0, 1.0]), np.array([0.3, 0.8, -np.inf])
    lengths = order.prefix_lengths(query_norms, bars)
    bounds = query_norms[:, None] * order.norms[None] + scorer.shared.item_bias[order.items][None]  # (3, n)
    for row, length in enumerate(lengths):
        assert (bounds[row, length:] < bars[row]).all()
        assert length == 0 or bounds[row, :length].max() >= bars[row]
    assert lengths[2] == len(order)


def test_the_retriever_serves_the_users_the_norm_order_leaves_through_the_index():
    scorer, state = heavy_tailed_case(5, n_items=12000)
    faint = np.arange(len(state)) % 2 == 0  # users whose queries are tiny: the biases decide, the norms prune nothing
    state = PersonaState(np.where(faint[:, None, None], 1e-4, 1.0) * state.coefficients, state.prior_logits)
    exclude = random_exclude(len(state), scorer.shared.n_items, seed=5)
    served = norm_order_top_k(NormOrder.of(scorer.shared), scorer, state, 10, exclude)[2]
    assert served.any() and not served.all()
    retriever = Retriever(scorer, RetrievalConfig(min_items=1))
    result = retriever.retrieve(state, 10, exclude)
    np.testing.assert_array_equal(result.ids, scorer.top_k(state, 10, exclude)[0])
    index_only = Retriever(scorer, RetrievalConfig(min_items=1, norm_order=False)).retrieve(state, 10, exclude)
    np.testing.assert_array_equal(result.ids, index_only.ids)
    assert result.exact.all()


def test_persona_top_items_equal_each_personas_ranking_over_the_subset():
    scorer, state = heavy_tailed_case(6)
    subset = np.random.default_rng(6).random(scorer.shared.n_items) < 0.5
    found = PersonaTopItems(scorer, NormOrder.of(scorer.shared, subset), seed=64)(state, 50)
    np.testing.assert_array_equal(found, _top(scorer.persona_scores(state), subset, 50))


def test_persona_top_items_cover_a_subset_smaller_than_asked():
    scorer, state = heavy_tailed_case(7, n_items=30)
    subset = np.zeros(30, bool)
    subset[:12] = True
    found = PersonaTopItems(scorer, NormOrder.of(scorer.shared, subset))(state, 50)
    assert found.shape == (len(state), 2, 12)
    np.testing.assert_array_equal(np.sort(found, axis=2), np.broadcast_to(np.arange(12), found.shape))


def test_a_stored_config_without_the_norm_order_field_reads_as_the_default():
    from dataclasses import asdict

    from recsys_pref.retrieval.serving import retrieval_config_from_dict

    stored = asdict(RetrievalConfig())
    stored.pop("norm_order")
    assert retrieval_config_from_dict(stored) == RetrievalConfig()
    assert retrieval_config_from_dict(asdict(replace(RetrievalConfig(), norm_order=False))).norm_order is False
