"""Specification of the slate-level beyond-accuracy measures."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from recsys_pref.evaluation.beyond_accuracy import (
    calibration_kl,
    catalog_coverage,
    gini_exposure,
    homogenization,
    intra_list_diversity,
    item_category_matrix,
    popularity_lift,
)


def profiles_of(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    dense = np.zeros((len(rows), n_items))
    for user, items in enumerate(rows):
        dense[user, items] = 1.0
    return sp.csr_matrix(dense)


# catalog_coverage


def test_coverage_is_share_of_catalog_in_any_top_k():
    recommended = np.array([[0, 1, 5], [1, 2, -1]])
    assert catalog_coverage(recommended, n_items=10, k=2) == pytest.approx(3 / 10)
    assert catalog_coverage(recommended, n_items=10, k=3) == pytest.approx(4 / 10)


def test_coverage_of_no_recommendations_is_zero():
    assert catalog_coverage(np.full((2, 3), -1), n_items=5, k=3) == 0.0


def test_coverage_rejects_item_ids_outside_catalog():
    with pytest.raises(ValueError, match="n_items"):
        catalog_coverage(np.array([[5]]), n_items=5, k=1)


# intra_list_diversity


def test_ild_of_identical_item_vectors_is_zero():
    features = np.array([[1.0, 2.0], [2.0, 4.0], [3.0, 6.0]])
    ild = intra_list_diversity(np.array([[0, 1, 2]]), features, k=3)
    assert ild == pytest.approx(0.0, abs=1e-12)


def test_ild_of_orthogonal_items_is_one():
    features = np.eye(3)
    assert intra_list_diversity(np.array([[0, 1, 2]]), features, k=3) == pytest.approx(1.0)


def test_ild_averages_pairwise_distances_then_users():
    # items 0, 1 identical direction; 2 orthogonal. user 0 pairs: d(0,1)=0, d(0,2)=d(1,2)=1.
    features = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    recommended = np.array([[0, 1, 2], [0, 2, -1]])
    expected = ((0 + 1 + 1) / 3 + 1.0) / 2
    assert intra_list_diversity(recommended, features, k=3) == pytest.approx(expected)


def test_ild_treats_all_zero_feature_vectors_as_dissimilar():
    features = np.array([[0.0, 0.0], [0.0, 0.0]])
    assert intra_list_diversity(np.array([[0, 1]]), features, k=2) == pytest.approx(1.0)


def test_ild_accepts_sparse_features():
    features = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    recommended = np.array([[0, 1, 2]])
    dense = intra_list_diversity(recommended, features, k=3)
    assert intra_list_diversity(recommended, sp.csr_matrix(features), k=3) == pytest.approx(dense)


def test_ild_skips_users_with_fewer_than_two_items():
    features = np.eye(3)
    recommended = np.array([[0, -1], [1, 2]])
    assert intra_list_diversity(recommended, features, k=2) == pytest.approx(1.0)


def test_ild_is_nan_when_no_user_has_two_items():
    assert math.isnan(intra_list_diversity(np.array([[0, -1]]), np.eye(2), k=2))


# gini_exposure


def test_gini_of_equal_exposure_is_zero():
    recommended = np.array([[0, 1], [2, 3]])
    assert gini_exposure(recommended, n_items=4, k=2) == pytest.approx(0.0)


def test_gini_of_single_exposed_item_is_maximal():
    recommended = np.array([[0], [0], [0]])
    assert gini_exposure(recommended, n_items=4, k=1) == pytest.approx(3 / 4)


def test_gini_counts_unexposed_items():
    # exposures sorted: [0, 1, 1]; Gini = sum_i sum_j |x_i - x_j| / (2 n^2 mean) = 4 / 12.
    recommended = np.array([[0], [1]])
    assert gini_exposure(recommended, n_items=3, k=1) == pytest.approx(1 / 3)


def test_gini_is_nan_when_nothing_is_recommended():
    assert math.isnan(gini_exposure(np.full((2, 2), -1), n_items=3, k=2))


# popularity_lift


def test_popularity_lift_compares_slate_and_profile_popularity():
    popularity = np.array([10.0, 2.0, 4.0, 1.0])
    profiles = profiles_of([[1, 3], [2]], n_items=4)  # profile means 1.5 and 4 -> 2.75
    recommended = np.array([[0, 2], [0, -1]])  # slate means 7 and 10 -> 8.5
    expected = (8.5 - 2.75) / 2.75
    assert popularity_lift(recommended, popularity, profiles, k=2) == pytest.approx(expected)


def test_popularity_lift_skips_users_with_empty_list_or_profile():
    popularity = np.array([4.0, 2.0, 8.0])
    profiles = profiles_of([[1], [], [0]], n_items=3)
    recommended = np.array([[0], [2], [-1]])
    assert popularity_lift(recommended, popularity, profiles, k=1) == pytest.approx((4 - 2) / 2)


def test_popularity_lift_is_zero_when_slate_mirrors_profiles():
    popularity = np.array([3.0, 5.0])
    profiles = profiles_of([[0], [1]], n_items=2)
    assert popularity_lift(np.array([[0], [1]]), popularity, profiles, k=1) == pytest.approx(0.0)


def test_popularity_lift_rejects_profiles_of_wrong_shape():
    with pytest.raises(ValueError, match="shape"):
        popularity_lift(np.array([[0]]), np.ones(2), profiles_of([[0], [1]], 2), k=1)


# calibration_kl


def test_calibration_is_zero_when_slate_mix_equals_profile_mix():
    categories = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    profiles = profiles_of([[0, 1]], n_items=4)
    recommended = np.array([[2, 3]])
    assert calibration_kl(recommended, categories, profiles, k=2) == pytest.approx(0.0, abs=1e-12)


def test_calibration_matches_hand_computed_kl():
    # p = (0.5, 0.5); slate all category 0: q = (1, 0); q~ = 0.9 q + 0.1 p = (0.95, 0.05).
    categories = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    profiles = profiles_of([[0, 1]], n_items=3)
    expected = 0.5 * math.log(0.5 / 0.95) + 0.5 * math.log(0.5 / 0.05)
    result = calibration_kl(np.array([[2, 0]]), categories, profiles, k=2, alpha=0.1)
    assert result == pytest.approx(expected)


def test_calibration_renormalises_category_rows_and_ignores_uncategorised_items():
    # item 1 has no category; item 0's row is rescaled to (0.5, 0.5).
    categories = np.array([[2.0, 2.0], [0.0, 0.0], [1.0, 1.0]])
    profiles = profiles_of([[0, 1]], n_items=3)
    kl = calibration_kl(np.array([[2, 1]]), categories, profiles, k=2)
    assert kl == pytest.approx(0.0, abs=1e-12)


def test_calibration_skips_users_with_empty_profile_or_list():
    categories = np.eye(2)
    profiles = profiles_of([[0], [], [1]], n_items=2)
    recommended = np.array([[0], [1], [-1]])
    assert calibration_kl(recommended, categories, profiles, k=1) == pytest.approx(0.0, abs=1e-12)


def test_calibration_rejects_alpha_outside_unit_interval():
    with pytest.raises(ValueError, match="alpha"):
        calibration_kl(np.array([[0]]), np.eye(1), profiles_of([[0]], 1), k=1, alpha=0.0)


def test_calibration_rejects_negative_categories():
    with pytest.raises(ValueError, match="non-negative"):
        calibration_kl(np.array([[0]]), -np.eye(1), profiles_of([[0]], 1), k=1)


# homogenization


def test_homogenization_of_identical_lists_is_one():
    recommended = np.array([[0, 1, 2], [2, 1, 0], [1, 0, 2]])
    assert homogenization(recommended, k=3) == pytest.approx(1.0)


def test_homogenization_of_disjoint_lists_is_zero():
    recommended = np.array([[0, 1], [2, 3], [4, 5]])
    assert homogenization(recommended, k=2) == 0.0


def test_homogenization_averages_jaccard_over_all_pairs():
    # J(0,1) = |{1}| / |{0,1,2}| = 1/3, J(0,2) = 0, J(1,2) = 0.
    recommended = np.array([[0, 1], [1, 2], [3, 4]])
    assert homogenization(recommended, k=2) == pytest.approx((1 / 3) / 3)


def test_homogenization_ignores_users_with_empty_lists():
    recommended = np.array([[0, 1], [-1, -1], [0, 1]])
    assert homogenization(recommended, k=2) == pytest.approx(1.0)


def test_homogenization_is_nan_with_fewer_than_two_users():
    assert math.isnan(homogenization(np.array([[0, 1]]), k=2))


def test_homogenization_subsample_is_seeded_and_exact_when_lists_identical():
    rng = np.random.default_rng(1)
    recommended = rng.integers(0, 30, size=(50, 5))
    first = homogenization(recommended, k=5, max_users=10, seed=3)
    assert first == homogenization(recommended, k=5, max_users=10, seed=3)
    same = np.tile(np.arange(5), (50, 1))
    assert homogenization(same, k=5, max_users=10) == pytest.approx(1.0)


# item_category_matrix


def test_item_category_matrix_spreads_weight_over_sorted_genres():
    matrix, names = item_category_matrix([["Drama", "Comedy"], ["Action"], []])
    assert names == ["Action", "Comedy", "Drama"]
    np.testing.assert_allclose(matrix, [[0.0, 0.5, 0.5], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
