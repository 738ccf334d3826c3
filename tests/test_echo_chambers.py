"""Echo-chamber metrics on constructed cases, the chunked simulator (same numbers in any chunk
size, exact chunked drift, memory refusal), the exposure penalty, and bad safeguards input."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp

from recsys_pref.bench.safeguards import SafeguardsBenchConfig
from recsys_pref.data import make_synthetic
from recsys_pref.evaluation.beyond_accuracy import gini, item_category_matrix
from recsys_pref.evaluation.echo_chambers import (
    chaney_homogenization, consumption_mix, dominant_counts, effective_clusters, group_consumption, narrowing,
    nearest_taste_pairs, pair_jaccard, polarization, random_pairs, taste_drift,
)
from recsys_pref.models.persona import PersonaRecommender
from recsys_pref.safeguards import SafeguardsConfig, load_safeguards
from recsys_pref.safeguards.simulator import (
    Simulation, SimulationConfig, TasteDrift, TrueTastes, check_memory, estimated_bytes, row_quantile,
)
from recsys_pref.safeguards.slate import SlateBuilder


def binary(rows: list[list[int]], n_items: int = 6) -> sp.csr_matrix:
    matrix = np.zeros((len(rows), n_items))
    for user, items in enumerate(rows):
        matrix[user, items] = 1
    return sp.csr_matrix(matrix)


# -- metrics --------------------------------------------------------------------------------
def test_pair_jaccard_is_shared_over_union_and_zero_for_pairs_that_consumed_nothing():
    consumed = binary([[0, 1], [1, 2], [], []])
    assert pair_jaccard(consumed, np.array([[0, 1]])) == pytest.approx(1 / 3)
    assert pair_jaccard(consumed, np.array([[2, 3]])) == 0.0
    assert pair_jaccard(consumed, np.array([[0, 0]])) == 1.0


def test_chaney_homogenization_is_the_excess_over_the_ideal_runs_jaccard():
    pairs = np.array([[0, 1]])
    alike, apart = binary([[0, 1], [0, 1]]), binary([[0, 1], [2, 3]])
    assert chaney_homogenization(alike, apart, pairs) == pytest.approx(1.0)
    assert chaney_homogenization(apart, apart, pairs) == 0.0


def test_nearest_taste_pairs_pair_each_user_with_the_most_similar_taste():
    tastes = np.array([[1.0, 0, 0], [0.9, 0.1, 0], [0, 0, 1.0], [0, 0.1, 0.9]])
    pairs = dict(map(tuple, nearest_taste_pairs(tastes)))
    assert pairs == {0: 1, 1: 0, 2: 3, 3: 2}


def test_random_pairs_are_disjoint_pairs_of_distinct_users():
    pairs = random_pairs(11, max_pairs=100, seed=0)
    assert pairs.shape == (5, 2) and len(np.unique(pairs)) == 10


def test_narrowing_is_the_entropy_lost_since_the_start():
    start = np.array([[0.5, 0.5], [1.0, 0.0]])
    assert narrowing(start, np.array([[1.0, 0.0], [1.0, 0.0]])) == pytest.approx(np.log(2) / 2)
    assert narrowing(start, start) == 0.0
    assert narrowing(start, np.array([[0.5, 0.5], [0.5, 0.5]])) == pytest.approx(-np.log(2) / 2)


def test_consumption_mix_averages_the_categories_of_each_users_items():
    categories = np.array([[1.0, 0], [0, 1.0], [0.5, 0.5], [0, 0]])
    mix = consumption_mix(binary([[0, 1], [2, 3], []], n_items=4), categories)
    np.testing.assert_allclose(mix, [[0.5, 0.5], [0.5, 0.5], [0, 0]])


def test_polarization_is_zero_for_alike_groups_and_one_for_disjoint_ones():
    consumed = binary([[0, 1], [0, 1], [2, 3], [2, 3]])
    apart = group_consumption(consumed, np.array([0, 0, 1, 1]), 2)
    mixed = group_consumption(consumed, np.array([0, 1, 0, 1]), 2)
    assert polarization(apart) == pytest.approx(1.0)
    assert polarization(mixed) == pytest.approx(0.0)
    assert np.isnan(polarization(apart[:1]))


def test_effective_clusters_count_even_dominant_categories_and_fall_to_one():
    assert effective_clusters(dominant_counts(np.eye(4))) == pytest.approx(4.0)
    assert effective_clusters(dominant_counts(np.tile([[0.6, 0.4]], (5, 1)))) == pytest.approx(1.0)
    np.testing.assert_allclose(dominant_counts(np.array([[0.5, 0.5], [0, 0]])), [0.5, 0.5])


def test_gini_is_zero_for_equal_exposure_and_near_one_for_one_item():
    assert gini(np.ones(5)) == pytest.approx(0.0)
    assert gini(np.array([0, 0, 0, 0, 7.0])) == pytest.approx(4 / 5)
    with pytest.raises(ValueError, match="non-negative"):
        gini(np.array([-1.0, 2.0]))


def test_taste_drift_is_zero_unchanged_and_two_reversed():
    initial = np.array([[1.0, 2.0, 3.0]])
    np.testing.assert_allclose(taste_drift(initial, initial), [0.0], atol=1e-12)
    np.testing.assert_allclose(taste_drift(-initial, initial), [2.0])


# -- the chunked simulator ----------------------------------------------------------------
def test_drift_is_measured_in_the_embedding_space_as_taste_drift_measures_it_over_the_catalog():
    rng = np.random.default_rng(1)
    embeddings, initial = rng.normal(size=(40, 5)), rng.normal(size=(4, 40))
    drift = TasteDrift.for_items(embeddings)
    summed = drift.step(binary([[0, 1], [], [5, 9, 30], [2]], n_items=40)) * 3.0
    utilities, drifted = drift.current(initial, summed, 0.2)
    np.testing.assert_allclose(drifted, taste_drift(utilities, initial), atol=1e-12)
    assert drifted[1] == 0.0 and drifted[0] > 0


def test_row_quantile_equals_numpys_linear_quantile():
    values = np.random.default_rng(2).normal(size=(7, 33))
    for q in (0.0, 0.3, 0.5, 0.99, 1.0):
        np.testing.assert_array_equal(row_quantile(values, q), np.quantile(values, q, axis=1))


def test_chunked_drift_equals_moving_the_utilities_toward_consumed_neighbours():
    rng = np.random.default_rng(0)
    embeddings, initial = rng.normal(size=(30, 4)), rng.normal(size=(3, 30))
    consumed = binary([[0, 1], [], [5]], n_items=30)
    drift = TasteDrift.for_items(embeddings)
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    similarity = np.asarray(consumed @ unit) @ unit.T / np.maximum(np.asarray(consumed.sum(axis=1)), 1)
    with np.errstate(invalid="ignore"):  # the user who consumed nothing has no spread (and keeps their taste)
        z = (similarity - similarity.mean(axis=1, keepdims=True)) / similarity.std(axis=1, keepdims=True)
    expected = initial + 0.1 * initial.std(axis=1, keepdims=True) * np.where(consumed.getnnz(axis=1)[:, None] > 0, z, 0)
    np.testing.assert_allclose(drift.current(initial, drift.step(consumed), 0.1)[0], expected, atol=1e-10)


@pytest.fixture(scope="module")
def dataset():
    return make_synthetic(n_users=90, n_items=50, n_personas=3, density=0.15, seed=2)


@pytest.fixture(scope="module")
def simulation(dataset, tiny_persona):
    model = PersonaRecommender(replace(tiny_persona, n_bases=8)).fit(dataset.to_csr()[:60])
    users = np.arange(60, 90)
    genres = item_category_matrix(dataset.items["genres"].to_list())[0]
    return Simulation(SlateBuilder.for_dataset(model, dataset), TrueTastes.planted(dataset, users),
                      dataset.to_csr()[users], item_genres=genres)


def test_the_simulation_gives_the_same_rows_in_any_chunk_size(simulation):
    config = SimulationConfig(rounds=2, drift=0.1, seed=1)
    whole = simulation.run(SafeguardsConfig.preset("all"), config)
    chunked = simulation.run(SafeguardsConfig.preset("all"), replace(config, chunk_users=7))
    for first, second in zip(whole, chunked):
        assert first.keys() == second.keys()
        for key in ("ndcg@10", "gini", "coverage", "taste_drift", "narrowing", "polarization"):
            assert first[key] == pytest.approx(second[key], nan_ok=True, rel=1e-9), key


def test_consumption_homogenization_can_grow_from_zero(simulation):
    rows = simulation.run(SafeguardsConfig(), SimulationConfig(rounds=3, seed=0))
    assert rows[0]["homogenization"] == 0.0 and rows[-1]["homogenization"] > 0.0


def test_chaney_homogenization_of_the_ideal_against_itself_is_zero(simulation):
    ideal = replace(simulation, builder=None)
    config = SimulationConfig(rounds=2, seed=0)
    rows = ideal.run(SafeguardsConfig(), config, reference=ideal.run(SafeguardsConfig(), config))
    assert all(row["chaney_homogenization"] == 0.0 for row in rows)


def test_a_simulation_too_large_for_the_machine_is_refused_with_its_size():
    estimate = estimated_bytes(10**9, 10**5, 16, 10**10, SimulationConfig())
    with pytest.raises(ValueError, match=r"needs about [\d.]+ GiB"):
        check_memory(estimate)
    check_memory(estimated_bytes(1000, 500, 16, 25_000, SimulationConfig()))


def test_the_exposure_penalty_moves_the_most_exposed_item_down(simulation):
    builder = simulation.builder
    histories = simulation.histories[:5]
    state = builder.model.fold_in(histories)
    plain = builder.build(state, histories, 5, SafeguardsConfig(exposure_penalty=0.0, candidates=20))
    exposure = np.zeros(builder.n_items)
    exposure[plain.items[:, 0]] = 100.0  # everyone's first item is the most exposed
    penalised = builder.with_exposure(exposure).build(state, histories, 5, SafeguardsConfig(exposure_penalty=1.0,
                                                                                           candidates=20))
    assert not (penalised.items[:, 0] == plain.items[:, 0]).all()


def test_the_exposure_penalty_without_exposure_is_a_clear_error(simulation):
    builder = replace(simulation.builder, item_exposure=None)
    histories = simulation.histories[:2]
    with pytest.raises(ValueError, match="item_exposure"):
        builder.build(builder.model.fold_in(histories), histories, 3, SafeguardsConfig(exposure_penalty=0.2))


# -- bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize("settings, message", [
    ({"exposure_penalty": 1.5}, "exposure_penalty must lie in"),
    ({"calibration_lambda": -0.1}, "calibration_lambda must lie in"),
    ({"calibrate_over": ["moods"]}, "unknown system"),
    ({"calibrated_order": "random"}, "calibrated_order must be one of"),
    ({"calibration_lambda": 0.3, "calibrate_over": []}, "cannot be combined"),
    ({"exploration_share": 1.0, "exposure_penalty": 0.1}, "cannot be combined"),
    ({"lambda": 0.3}, "unknown safeguards setting"),
])
def test_bad_safeguards_settings_are_refused_naming_the_problem(settings, message):
    with pytest.raises(ValueError, match=message):
        SafeguardsConfig.from_dict(settings)


def test_an_unknown_preset_is_refused():
    with pytest.raises(FileNotFoundError, match="no safeguards preset"):
        load_safeguards("everything")
    with pytest.raises(ValueError, match="unknown safeguards preset"):
        SafeguardsConfig.preset("everything")


def test_the_bench_refuses_an_unknown_population_or_setting():
    with pytest.raises(ValueError, match="population must be one of"):
        SafeguardsBenchConfig(population="train")
    with pytest.raises(ValueError, match="unknown safeguards setting"):
        SafeguardsBenchConfig(settings=("off", "maximal"))
