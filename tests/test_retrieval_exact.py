"""Exact IVF retrieval by cell bounds, index verification on load, and exact-by-default serving."""
from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest

from recsys_pref.models.persona.scorer import PersonaScorer, SharedSide
from recsys_pref.models.persona.state import PersonaState
from recsys_pref.retrieval.cells import bound_items, bound_queries, fit_subspace
from recsys_pref.retrieval.certified import certified_top_k
from recsys_pref.retrieval.index import CandidateIndex, IndexConfig, IndexMismatchError
from recsys_pref.retrieval.serving import MEASURED_APPROXIMATE, RetrievalConfig, Retriever, retrieval_config_from_dict

KINDS = ["Flat", "ExactIVF8", "HNSW8", "IVF8,Flat", "IVF8,PQ8x4fs"]


def low_rank_case(seed: int = 0, n_items: int = 3000, n_users: int = 30):
    """Items in 6 dimensions, users whose persona queries lie mostly in 2 of them."""
    rng = np.random.default_rng(seed)
    shared = SharedSide(rng.standard_normal((n_items, 6)), rng.standard_normal(n_items) * 0.5, np.eye(6), 1.0)
    coefficients = np.zeros((n_users, 2, 6))
    coefficients[:, :, :2] = rng.standard_normal((n_users, 2, 2)) * 3
    coefficients[:, :, 2:] = rng.standard_normal((n_users, 2, 4)) * 0.05
    return PersonaScorer(shared), PersonaState(coefficients, rng.standard_normal((n_users, 2)))


def build(scorer: PersonaScorer, factory: str, state: PersonaState | None = None) -> CandidateIndex:
    queries = None if state is None else scorer.queries(state).reshape(-1, 6)
    return CandidateIndex.build(scorer.shared.item_embeddings, scorer.shared.item_bias, IndexConfig(factory=factory), queries)


def test_exact_ivf_equals_exhaustive_scoring_while_scanning_part_of_the_catalog():
    scorer, state = low_rank_case()
    result = certified_top_k(build(scorer, "ExactIVF64", state), scorer, state, 10)
    np.testing.assert_array_equal(result.ids, scorer.top_k(state, 10)[0])
    assert result.certified.all() and not result.approximate
    assert result.scanned.mean() < scorer.shared.n_items / 2


def test_the_bound_space_inner_product_bounds_the_true_one():
    rng = np.random.default_rng(1)
    embeddings, bias, queries = rng.standard_normal((500, 5)), rng.standard_normal(500), rng.standard_normal((40, 5))
    subspace = fit_subspace(queries[:, :2] @ rng.standard_normal((2, 5)), 0.9)
    assert subspace is not None and subspace.shape == (5, 2)
    true = queries @ embeddings.T + bias
    bounded = bound_queries(queries, subspace).astype(np.float64) @ bound_items(embeddings, bias, subspace).T.astype(np.float64)
    assert (bounded >= true - 1e-5).all()


def test_every_item_lies_under_its_cell_bound():
    scorer, state = low_rank_case(2)
    index = build(scorer, "ExactIVF16", state)
    cells = index.cells
    queries = index.bound_queries(np.random.default_rng(2).standard_normal((20, 6)))
    cell_bounds = cells.cell_bounds(queries)  # (20, C)
    item_bounds = queries @ cells.vectors.T  # (20, n) in cell order
    cell_of = np.repeat(np.arange(cells.n_cells), cells.sizes)
    assert (item_bounds <= cell_bounds[:, cell_of] + 1e-5).all()


def test_cell_radii_are_recomputed_when_items_are_added():
    scorer, state = low_rank_case(3, n_items=400)
    index = build(scorer, "ExactIVF8", state)
    shared = scorer.shared
    far = np.full((1, 6), 40.0)  # far from every cell: whichever cell takes it must grow
    grown = SharedSide(np.vstack([shared.item_embeddings, far]), np.append(shared.item_bias, 5.0), shared.bases, 1.0)
    radii_before = index.cells.radii.copy()
    index.add(grown.item_embeddings, grown.item_bias)
    position = int(np.flatnonzero(index.cells.order == 400)[0])
    cell = int(np.searchsorted(index.cells.offsets, position, side="right") - 1)
    assert index.cells.radii[cell] > radii_before[cell]
    grown_scorer = PersonaScorer(grown)
    result = certified_top_k(index, grown_scorer, state, 5)
    np.testing.assert_array_equal(result.ids, grown_scorer.top_k(state, 5)[0])


def test_items_cannot_be_added_to_an_approximate_index():
    scorer, _ = low_rank_case(4, n_items=400)
    index = build(scorer, "HNSW8")
    with pytest.raises(ValueError, match="exact indexes only"):
        index.add(scorer.shared.item_embeddings, scorer.shared.item_bias)


@pytest.mark.parametrize("factory", KINDS)
def test_every_index_kind_round_trips_and_is_verified_on_load(factory):
    scorer, state = low_rank_case(5, n_items=2000)
    index = build(scorer, factory, state)
    loaded = CandidateIndex.from_bytes(index.to_bytes(), index.metadata(), scorer.shared.item_embeddings, scorer.shared.item_bias)
    np.testing.assert_array_equal(certified_top_k(loaded, scorer, state, 5).ids, certified_top_k(index, scorer, state, 5).ids)


@pytest.mark.parametrize("factory", KINDS)
def test_an_index_file_of_another_model_is_refused_even_with_this_models_metadata(factory):
    scorer, state = low_rank_case(6, n_items=2000)
    other, _ = low_rank_case(7, n_items=2000)
    ours, theirs = build(scorer, factory, state), build(other, factory, state)
    with pytest.raises(IndexMismatchError, match="stored vectors are not this model's items"):
        CandidateIndex.from_bytes(theirs.to_bytes(), ours.metadata(), scorer.shared.item_embeddings, scorer.shared.item_bias)


def test_an_index_whose_metadata_names_other_items_is_refused():
    scorer, state = low_rank_case(8, n_items=500)
    index = build(scorer, "ExactIVF8", state)
    with pytest.raises(IndexMismatchError, match="other item vectors"):
        CandidateIndex.from_bytes(index.to_bytes(), index.metadata(), scorer.shared.item_embeddings,
                                  scorer.shared.item_bias + 1e-3)


def test_serving_is_exact_by_default_above_the_flat_size():
    scorer, state = low_rank_case(9, n_items=2000)
    config = RetrievalConfig(min_items=100, index=IndexConfig(flat_max_items=500))
    retriever = Retriever(scorer, config)
    result = retriever.retrieve(state, 10)
    assert retriever.exact and retriever.index.factory.startswith("ExactIVF") and result.certified.all()
    np.testing.assert_array_equal(result.ids, scorer.top_k(state, 10)[0])


def test_an_approximate_index_without_a_recall_target_is_refused():
    with pytest.raises(ValueError, match="approximate; opt in with recall_target"):
        RetrievalConfig(index=IndexConfig(factory="HNSW32"))


def test_a_recall_target_picks_the_fastest_setting_measured_to_reach_it():
    for target in (0.2, 0.9, 0.99):
        chosen = RetrievalConfig(recall_target=target).approximate_setting()
        assert chosen.recall >= target
        assert all(setting.recall < target for setting in MEASURED_APPROXIMATE[: MEASURED_APPROXIMATE.index(chosen)])


def test_a_recall_target_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="recall_target must be in"):
        RetrievalConfig(recall_target=1.5)


def test_an_approximate_opt_in_is_labelled_approximate():
    scorer, state = low_rank_case(10, n_items=2000)
    config = RetrievalConfig(min_items=100, index=IndexConfig(flat_max_items=500), recall_target=0.99)
    retriever = Retriever(scorer, config)
    assert not retriever.exact
    result = retriever.retrieve(state, 10)
    assert not result.certified.any() and result.approximate == (not result.fallback.all())


def test_a_stored_config_with_the_old_approximate_default_is_read_as_exact():
    stored = asdict(RetrievalConfig())
    stored["index"]["large_factory"] = "IVF{nlist},Flat"
    stored.pop("recall_target")
    assert retrieval_config_from_dict(stored).index.large_factory == "ExactIVF{nlist}"
