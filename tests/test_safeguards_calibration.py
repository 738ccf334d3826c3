"""Steck's calibrated re-ranking (safeguards.calibration)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp

from recsys_pref.safeguards import calibration
from recsys_pref.safeguards.calibration import (
    base_distributions,
    calibrated_rerank,
    calibration_objective,
    history_mix,
    scaled_relevance,
    smoothed_kl,
)


def brute_force_best(relevance: np.ndarray, mix: np.ndarray, target: np.ndarray, k: int, lam: float) -> float:
    return max(calibration_objective(relevance[list(s)], mix[list(s)], target, lam)
               for s in itertools.combinations(range(len(relevance)), k))


@pytest.mark.parametrize("case", range(60))
def test_greedy_matches_brute_force_with_one_category_per_item(case):
    rng = np.random.default_rng(case)
    n_items, k, n_categories = 6, int(rng.integers(1, 4)), int(rng.integers(2, 4))
    relevance = rng.random(n_items)
    mix = np.eye(n_categories)[rng.integers(0, n_categories, n_items)]
    target = rng.dirichlet(np.ones(n_categories))
    lam = float(rng.random())
    slate = calibrated_rerank(relevance[None], mix[None], target[None], k, lam)[0]
    greedy = calibration_objective(relevance[slate], mix[slate], target, lam)
    assert greedy == pytest.approx(brute_force_best(relevance, mix, target, k, lam), abs=1e-12)


@pytest.mark.parametrize("case", range(20))
def test_greedy_matches_brute_force_for_a_single_slot_with_mixed_items(case):
    rng = np.random.default_rng(100 + case)
    relevance, mix, target = rng.random(6), rng.dirichlet(np.ones(3), 6), rng.dirichlet(np.ones(3))
    slate = calibrated_rerank(relevance[None], mix[None], target[None], 1, 0.7)[0]
    greedy = calibration_objective(relevance[slate], mix[slate], target, 0.7)
    assert greedy == pytest.approx(brute_force_best(relevance, mix, target, 1, 0.7), abs=1e-12)


def test_lambda_zero_gives_the_relevance_ranking():
    rng = np.random.default_rng(0)
    relevance = rng.random((5, 30))
    mix = rng.dirichlet(np.ones(4), (5, 30))
    slate = calibrated_rerank(relevance, mix, rng.dirichlet(np.ones(4), 5), 10, 0.0)
    np.testing.assert_array_equal(slate, np.argsort(-relevance, axis=1)[:, :10])


def test_many_users_are_split_over_threads_with_the_same_slates(monkeypatch):
    rng = np.random.default_rng(1)
    n_users = 50
    relevance, mix = rng.random((n_users, 30)), rng.dirichlet(np.ones(4), (n_users, 30))
    relevance[3, :5] = -np.inf
    target = rng.dirichlet(np.ones(4), n_users)
    whole = calibrated_rerank(relevance, mix, target, 10, 0.6)
    monkeypatch.setattr(calibration, "BLOCK_USERS", 7)
    monkeypatch.setattr(calibration, "usable_cores", lambda: 3)  # three blocks
    np.testing.assert_array_equal(calibrated_rerank(relevance, mix, target, 10, 0.6), whole)


def test_lambda_one_reproduces_an_attainable_mix():
    mix = np.eye(2)[[0, 0, 0, 0, 1, 1, 1, 1]]
    relevance = np.linspace(1, 0, 8)  # the relevance order would take category 0 first
    slate = calibrated_rerank(relevance[None], mix[None], np.array([[0.5, 0.5]]), 4, 1.0)[0]
    assert mix[slate].sum(axis=0).tolist() == [2, 2]


def test_unusable_candidates_are_left_out():
    relevance = np.array([[1.0, -np.inf, 0.5]])
    slate = calibrated_rerank(relevance, np.ones((1, 3, 1)), np.ones((1, 1)), 3, 0.5)
    assert slate.tolist() == [[0, 2, -1]]


def test_rerank_rejects_mismatched_shapes_and_bad_lambda():
    with pytest.raises(ValueError, match="shapes"):
        calibrated_rerank(np.ones((1, 3)), np.ones((1, 4, 2)), np.ones((1, 2)) / 2, 2, 0.5)
    with pytest.raises(ValueError, match="lambda"):
        calibrated_rerank(np.ones((1, 3)), np.ones((1, 3, 2)) / 2, np.ones((1, 2)) / 2, 2, 1.5)


def test_smoothed_kl_is_zero_for_identical_mixes_and_finite_for_disjoint_ones():
    p = np.array([0.3, 0.7])
    assert smoothed_kl(p, p) == pytest.approx(0.0)
    assert 0 < smoothed_kl(p, np.array([1.0, 0.0])) < np.inf


def test_scaled_relevance_spans_zero_to_one_per_user():
    scaled = scaled_relevance(np.array([[3.0, 1.0, 2.0], [5.0, 5.0, 5.0]]))
    np.testing.assert_allclose(scaled, [[1.0, 0.0, 0.5], [1.0, 1.0, 1.0]])


def test_history_mix_averages_the_history_and_falls_back_to_the_catalog():
    distributions = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    histories = sp.csr_matrix(np.array([[1, 0, 1], [0, 0, 0]], np.float32))
    np.testing.assert_allclose(history_mix(histories, distributions), [[0.75, 0.25], [0.5, 0.5]])


def test_base_distributions_are_distributions_led_by_the_strongest_base():
    rewards = np.array([[3.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    distributions = base_distributions(rewards)
    np.testing.assert_allclose(distributions.sum(axis=1), 1.0)
    assert distributions.argmax(axis=1)[:2].tolist() == [0, 1]
