"""The feedback loop with retraining, the honest target check, the safeguards sweep, and the
audit metrics that every evaluation reports (persona entropy, Chaney's homogenization)."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp

from recsys_pref.bench.safeguards import HARM, NOT_MEASURABLE, SafeguardsBenchConfig, target_check
from recsys_pref.cli import main
from recsys_pref.data import make_split, make_synthetic, SplitConfig
from recsys_pref.evaluation.evaluate import evaluate, recommend_held_out
from recsys_pref.models.popularity import Popularity
from recsys_pref.models.persona import PersonaRecommender
from recsys_pref.safeguards import SafeguardsConfig
from recsys_pref.evaluation.audit import homogenization_vs_ideal, ideal_slates, slate_persona_entropy
from recsys_pref.safeguards.simulator import Simulation, SimulationConfig, TrueTastes
from recsys_pref.safeguards.slate import SlateBuilder



@pytest.fixture(scope="module")
def dataset():
    return make_synthetic(n_users=120, n_items=60, n_personas=3, density=0.15, seed=4)


@pytest.fixture(scope="module")
def split(dataset):
    return make_split(dataset, SplitConfig(test_share=0.3, val_share=0.1, seed=0))


@pytest.fixture(scope="module")
def config(tiny_persona):
    return replace(tiny_persona, n_bases=8, max_epochs=2)


@pytest.fixture(scope="module")
def model(split, config):
    return PersonaRecommender(config).fit(split.train)


def rows(off: tuple[float, float], on: tuple[float, float], metric: str = "chaney_homogenization") -> list[dict]:
    """Rounds 0 and 1 of "off" and "all" with `metric` at the given values and every other
    metric of HARM equal in both (std 0)."""
    fixed = dict.fromkeys(HARM, 0.5)
    return [fixed | {"safeguards": name, "round": round_index, metric: values[round_index]}
            for name, values in (("off", off), ("all", on)) for round_index in (0, 1)]


def test_target_check_calls_a_growth_target_not_measurable_when_off_does_not_grow():
    check = target_check(rows(off=(0.2, 0.1), on=(0.2, 0.05)), rounds=1)
    assert check["chaney_homogenization_growth_met"] == NOT_MEASURABLE


def test_target_check_meets_the_growth_target_only_at_half_of_offs_growth():
    assert check_met(off=(0.1, 0.3), on=(0.1, 0.19)) is True
    assert check_met(off=(0.1, 0.3), on=(0.1, 0.21)) is False


def check_met(off, on):
    return target_check(rows(off, on), rounds=1)["chaney_homogenization_growth_met"]


def test_target_check_lists_a_metric_worse_with_safeguards_on_beyond_seed_noise():
    check = target_check(rows(off=(0.5, 0.5), on=(0.5, 0.4), metric="effective_clusters"), rounds=1)
    assert check["worse"] == ["effective_clusters"] and check["no_metric_worse_met"] is False
    noisy = [row | {"effective_clusters_std": 0.1} for row in rows(off=(0.5, 0.5), on=(0.5, 0.4),
                                                                  metric="effective_clusters")]
    assert target_check(noisy, rounds=1)["no_metric_worse_met"] is True


def with_ideal(table: list[dict], metric: str, value: float) -> list[dict]:
    """`table` plus an "ideal" row at round 1 with `metric` at value."""
    return table + [dict.fromkeys(HARM, 0.5) | {"safeguards": "ideal", "round": 1, metric: value}]


def test_target_check_judges_a_consumption_metric_by_its_excess_over_the_ideal_recommender():
    # polarization rose (raw: worse) but stayed below the ideal's: no harm beyond people's own tastes
    table = with_ideal(rows(off=(0.4, 0.4), on=(0.4, 0.55), metric="polarization"), "polarization", 0.6)
    check = target_check(table, rounds=1)
    assert check["worse_raw"] == ["polarization"] and check["worse"] == []
    assert check["ideal_excess"]["polarization"] == {"off": 0.0, "on": 0.0}
    overshoot = with_ideal(rows(off=(0.4, 0.4), on=(0.4, 0.75), metric="polarization"), "polarization", 0.6)
    assert target_check(overshoot, rounds=1)["worse"] == ["polarization"]


def test_target_check_leaves_true_utility_to_the_ndcg_cost_budget():
    check = target_check(rows(off=(0.5, 0.5), on=(0.5, 0.4), metric="true_utility"), rounds=1)
    assert check["worse_raw"] == ["true_utility"] and check["no_metric_worse_met"] is True


def test_retraining_refits_the_model_every_n_rounds_and_rebuilds_its_bases(split, model, config):
    users = np.arange(10)
    histories = split.test.fold_in[:10]
    refits = []

    def refit(grown: sp.csr_matrix) -> PersonaRecommender:
        refits.append(grown.copy())
        return PersonaRecommender(config).fit(sp.vstack([split.train, grown]).tocsr())

    tastes = TrueTastes(model.shared.item_embeddings, utilities=np.random.default_rng(0).normal(size=(10, model.n_items)))
    simulation = Simulation(SlateBuilder.for_model(model), tastes, histories, retrain=refit)
    simulation.run(SafeguardsConfig(), SimulationConfig(rounds=4, retrain_every=2))
    assert len(refits) == 2
    assert refits[1].nnz > refits[0].nnz > histories.nnz
    assert len(users) == refits[0].shape[0]


def test_with_overrides_routes_simulation_bench_and_model_keys():
    config = SafeguardsBenchConfig().with_overrides({"retrain_every": 3, "drift": 0.0, "n_users": 50, "max_epochs": 5})
    assert (config.simulation.retrain_every, config.simulation.drift) == (3, 0.0)
    assert config.n_users == 50 and config.model["max_epochs"] == 5


def test_ideal_slates_hold_up_to_k_of_each_users_targets():
    targets = sp.csr_matrix(np.array([[1, 1, 1, 1, 0], [0, 0, 0, 0, 1]], dtype=np.float32))
    slates = ideal_slates(targets, k=2, seed=0)
    assert set(slates[0]) <= {0, 1, 2, 3} and len(set(slates[0])) == 2
    assert slates[1].tolist() == [4, -1]


def test_evaluate_reports_persona_entropy_and_chaney_homogenization_of_its_own_lists(split, model):
    metrics = evaluate(model, split.test, catalog=split.catalog).metrics
    recommended = recommend_held_out(model, split.test, 10, split.catalog)
    expected_entropy = slate_persona_entropy(model, split.test.fold_in, recommended)
    expected_homogenization = homogenization_vs_ideal(recommended, ideal_slates(split.test.targets, 10), 10)
    assert metrics["persona_entropy@10"] == pytest.approx(expected_entropy)
    assert metrics["homogenization_vs_ideal@10"] == pytest.approx(expected_homogenization)


def test_evaluate_reports_chaney_homogenization_but_no_persona_entropy_for_other_models(split):
    popularity = Popularity().fit(split.train)
    metrics = evaluate(popularity, split.test, catalog=split.catalog).metrics
    assert "persona_entropy@10" not in metrics
    assert metrics["homogenization_vs_ideal@10"] > 0  # everyone gets the same list, tastes differ


@pytest.mark.integration
def test_bench_safeguards_sweep_quick_reports_costs_against_off(tmp_path):
    code = main(["bench", "safeguards", "--dataset", "synthetic", "--synthetic", "n_users=200",
                 "--synthetic", "n_items=80", "--out", str(tmp_path), "--quick", "--sweep"])
    assert code == 0
    result = json.loads((tmp_path / "safeguards.json").read_text())
    by_name = {row["safeguards"]: row for row in result["rows"]}
    assert by_name["off"]["ndcg_cost"] == pytest.approx(0.0)
    assert len(by_name) == 5 and all("calibration_kl_ratio" in row for row in by_name.values())
    assert "validation" in result["protocol"]
