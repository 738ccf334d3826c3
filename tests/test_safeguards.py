"""Safeguarded slates, exploration, audit metrics, the feedback-loop simulator, and the
safeguards in `recommend`, the CLI and the bench."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp

from recsys_pref.cli import main
from recsys_pref.data import make_synthetic
from recsys_pref.evaluation.beyond_accuracy import item_category_matrix
from recsys_pref.core.ranking import top_k
from recsys_pref.models.persona import PersonaRecommender
from recsys_pref.pipeline import PersonaPipeline
from recsys_pref.safeguards import SafeguardsConfig, load_safeguards
from recsys_pref.evaluation.audit import homogenization_vs_ideal, persona_entropy
from recsys_pref.safeguards.exploration import least_seen_bases
from recsys_pref.safeguards.simulator import Simulation, SimulationConfig, TrueTastes, consume
from recsys_pref.safeguards.slate import SlateBuilder



@pytest.fixture(scope="module")
def dataset():
    return make_synthetic(n_users=120, n_items=60, n_personas=3, density=0.15, seed=4)


@pytest.fixture(scope="module")
def model(dataset, tiny_persona):
    return PersonaRecommender(replace(tiny_persona, n_bases=8)).fit(dataset.to_csr()[:80])


@pytest.fixture(scope="module")
def builder(model, dataset):
    return SlateBuilder.for_dataset(model, dataset)


@pytest.fixture(scope="module")
def simulation(builder, dataset):
    users = np.arange(80, 120)
    genres = item_category_matrix(dataset.items["genres"].to_list())[0]
    return Simulation(builder, TrueTastes.planted(dataset, users), dataset.to_csr()[users], item_genres=genres)


def test_off_gives_the_plain_models_top_k(builder, model, dataset):
    histories = dataset.to_csr()[80:]
    slates = builder.build(model.fold_in(histories), histories, 10, SafeguardsConfig())
    plain, values = top_k(model.score(histories), 10, exclude=histories)
    np.testing.assert_array_equal(slates.items, plain)
    np.testing.assert_allclose(slates.scores, values, rtol=1e-6)
    assert not slates.exploration.any()


def test_exploration_fills_the_last_slots_from_least_seen_bases(builder, model, dataset):
    histories = dataset.to_csr()[80:]
    config = SafeguardsConfig(exploration_share=0.2, exploration_base_share=0.25)
    slates = builder.build(model.fold_in(histories), histories, 10, config)
    assert slates.exploration[:, 8:].all() and not slates.exploration[:, :8].any()
    least = least_seen_bases(histories, builder.item_bases, 2)
    dominant = builder.item_bases.argmax(axis=1)[slates.items[:, 8:]]
    assert all(set(row) <= set(bases) for row, bases in zip(dominant.tolist(), least.tolist()))
    assert not histories.multiply(sp.csr_matrix((np.ones(slates.items.size), (np.repeat(np.arange(40), 10),
                                                 slates.items.ravel())), shape=histories.shape)).nnz


def test_calibration_lowers_the_genre_kl_of_slates(builder, model, dataset, simulation):
    histories = simulation.histories
    state = model.fold_in(histories)
    from recsys_pref.evaluation.beyond_accuracy import calibration_kl

    plain = builder.build(state, histories, 10, SafeguardsConfig()).items
    calibrated = builder.build(state, histories, 10, SafeguardsConfig(calibration_lambda=0.9,
                                                                      calibrate_over=("genres",))).items
    assert calibration_kl(calibrated, simulation.item_genres, histories, 10) < \
        calibration_kl(plain, simulation.item_genres, histories, 10)


def test_relevance_order_ranks_the_greedy_calibrated_set_by_score(builder, model, simulation):
    histories = simulation.histories
    state = model.fold_in(histories)
    greedy = SafeguardsConfig(calibration_lambda=0.9, calibrate_over=("genres",))
    by_greedy = builder.build(state, histories, 10, greedy)
    by_relevance = builder.build(state, histories, 10, replace(greedy, calibrated_order="relevance"))
    assert [set(row) for row in by_relevance.items.tolist()] == [set(row) for row in by_greedy.items.tolist()]
    assert (np.diff(by_relevance.scores, axis=1) <= 0).all()
    assert (np.diff(by_greedy.scores, axis=1) > 0).any()  # the greedy order is not already the score order


def test_persona_entropy_is_one_for_an_even_mix_and_zero_for_one_persona():
    even = np.full((1, 2, 4), 0.5)
    single = np.stack([np.ones((1, 4)), np.zeros((1, 4))], axis=1)
    assert persona_entropy(even) == pytest.approx(1.0)
    assert persona_entropy(single) == pytest.approx(0.0)


def test_homogenization_vs_ideal_is_zero_for_the_ideal_itself():
    slates = np.array([[0, 1, 2], [1, 2, 3], [4, 5, 6]])
    assert homogenization_vs_ideal(slates, slates, 3) == 0.0


def test_consumption_takes_only_slate_items_and_stops_at_no_choice():
    utilities = np.array([[5.0, 4.0, -50.0, -50.0, 0.0, 0.0]])
    config = SimulationConfig(choices_per_round=3, no_choice_quantile=0.5)
    taken = consume(np.array([[0, 1, 2]]), utilities, np.random.default_rng(0), config)
    assert set(taken.indices.tolist()) <= {0, 1}


def test_simulator_is_deterministic_per_seed(simulation):
    config = SimulationConfig(rounds=2, drift=0.1, seed=3)
    first = simulation.run(SafeguardsConfig.preset("all"), config)
    np.testing.assert_equal(first, simulation.run(SafeguardsConfig.preset("all"), config))  # NaN == NaN here
    other = simulation.run(SafeguardsConfig.preset("all"), replace(config, seed=4))
    assert [row["homogenization"] for row in first] != [row["homogenization"] for row in other]


def test_ideal_recommender_has_full_ndcg_and_no_drift_without_drift(simulation):
    ideal = replace(simulation, builder=None)
    rows = ideal.run(SafeguardsConfig(), SimulationConfig(rounds=5, seed=0))
    assert all(row["ndcg@10"] == pytest.approx(1.0) for row in rows)
    assert all(row["taste_drift"] == pytest.approx(0.0, abs=1e-12) for row in rows)


def test_taste_drift_grows_with_drift(simulation):
    rows = simulation.run(SafeguardsConfig(), SimulationConfig(rounds=2, drift=0.2))
    assert rows[0]["taste_drift"] == pytest.approx(0.0, abs=1e-12)
    assert rows[-1]["taste_drift"] > 1e-6


def test_planted_tastes_need_a_synthetic_dataset(dataset):
    with pytest.raises(ValueError, match="planted"):
        TrueTastes.planted(replace(dataset, ground_truth=None), np.arange(3))


@pytest.fixture(scope="module")
def pipeline(dataset, tiny_persona):
    return PersonaPipeline.fit(dataset, replace(tiny_persona, n_bases=8))


def test_recommend_with_safeguards_off_equals_the_plain_model(pipeline):
    plain = pipeline.recommend([0, 1, 2], k=5)
    assert plain.equals(pipeline.recommend([0, 1, 2], k=5, safeguards=SafeguardsConfig()))


def test_recommend_labels_exploration_rows(pipeline):
    frame = pipeline.recommend([0, 1], k=5, safeguards=SafeguardsConfig(exploration_share=0.4))
    explored = frame.filter(frame["exploration"])
    assert explored.height == 4 and explored["persona_label"].str.starts_with("exploration: ").all()
    assert not frame.filter(~frame["exploration"])["persona_label"].str.starts_with("exploration").any()


def test_load_safeguards_reads_presets_and_the_conf_file():
    assert load_safeguards("off") == SafeguardsConfig()
    assert load_safeguards("safeguards").active
    with pytest.raises(ValueError, match="unknown safeguards setting"):
        SafeguardsConfig.from_dict({"lambda": 0.5})
    with pytest.raises(FileNotFoundError, match="no safeguards preset"):
        load_safeguards("no-such-preset")


def test_cli_recommend_takes_a_safeguards_preset(pipeline, tmp_path):
    pipeline.save(tmp_path / "model")
    (tmp_path / "users.txt").write_text("0\n1\n")
    out = tmp_path / "recs.csv"
    assert main(["recommend", "--model", str(tmp_path / "model"), "--users", str(tmp_path / "users.txt"),
                 "--safeguards", "all", "--out", str(out)]) == 0
    assert "exploration" in out.read_text().splitlines()[0]


def test_bench_safeguards_quick_writes_rows_and_a_plot(tmp_path):
    code = main(["bench", "safeguards", "--dataset", "synthetic", "--synthetic", "n_users=200",
                 "--synthetic", "n_items=80", "--out", str(tmp_path), "--quick"])
    assert code == 0
    result = json.loads((tmp_path / "safeguards.json").read_text())
    assert {row["safeguards"] for row in result["rows"]} == {"ideal", "off", "all"}
    expected = {"safeguards", "round", "ndcg@10", "true_utility", "homogenization", "chaney_homogenization",
                "calibration_kl", "persona_entropy", "narrowing", "polarization", "effective_clusters", "coverage",
                "gini", "taste_drift"}
    assert expected <= set(result["rows"][0])
    assert (tmp_path / "safeguards.png").stat().st_size > 0
