"""Specification of full-catalog top-k ranking in recsys_pref.core.ranking."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys_pref.core.ranking import top_k


def test_returns_highest_scores_in_descending_order() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.7, 0.3]])
    ids, values = top_k(scores, 3)
    np.testing.assert_array_equal(ids, [[1, 3, 2]])
    np.testing.assert_allclose(values, [[0.9, 0.7, 0.5]], rtol=1e-6)


def test_ranks_each_row_independently() -> None:
    scores = np.array([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
    ids, _ = top_k(scores, 2)
    np.testing.assert_array_equal(ids, [[0, 1], [2, 1]])


def test_output_shapes_and_dtypes() -> None:
    ids, values = top_k(np.random.default_rng(0).random((4, 10)), 3)
    assert ids.shape == values.shape == (4, 3)
    assert ids.dtype == np.int64
    assert values.dtype == np.float32


def test_one_dimensional_scores_are_one_row() -> None:
    ids, _ = top_k(np.array([0.2, 0.8, 0.5]), 2)
    np.testing.assert_array_equal(ids, [[1, 2]])


def test_ties_are_broken_by_lower_item_index() -> None:
    ids, _ = top_k(np.ones((1, 6)), 4)
    np.testing.assert_array_equal(ids, [[0, 1, 2, 3]])


def test_ties_at_the_kth_score_keep_the_lower_indices() -> None:
    scores = np.array([[0.0, 2.0, 1.0, 1.0, 2.0, 1.0, 1.0]])
    ids, _ = top_k(scores, 3)
    np.testing.assert_array_equal(ids, [[1, 4, 2]])


def test_ties_are_broken_by_lower_index_in_a_large_row() -> None:
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 5, size=(3, 500)).astype(np.float32)
    ids, _ = top_k(scores, 50)
    for row in range(3):
        expected = np.lexsort((np.arange(500), -scores[row]))[:50]
        np.testing.assert_array_equal(ids[row], expected)


def test_same_scores_always_give_the_same_list() -> None:
    scores = np.random.default_rng(2).integers(0, 3, size=(5, 40)).astype(np.float32)
    first, _ = top_k(scores, 10)
    second, _ = top_k(scores.copy(), 10)
    np.testing.assert_array_equal(first, second)


def test_excluded_items_are_never_returned() -> None:
    scores = np.array([[5.0, 4.0, 3.0, 2.0, 1.0], [5.0, 4.0, 3.0, 2.0, 1.0]])
    exclude = sp.csr_matrix(np.array([[1, 0, 1, 0, 0], [0, 1, 0, 0, 0]], dtype=np.float32))
    ids, _ = top_k(scores, 3, exclude=exclude)
    np.testing.assert_array_equal(ids, [[1, 3, 4], [0, 2, 3]])


def test_exclusion_does_not_modify_the_callers_scores() -> None:
    scores = np.array([[5.0, 4.0, 3.0]], dtype=np.float32)
    top_k(scores, 2, exclude=sp.csr_matrix(np.array([[1.0, 0.0, 0.0]])), banned_items=np.array([1]))
    np.testing.assert_array_equal(scores, [[5.0, 4.0, 3.0]])


def test_banned_item_ids_are_never_returned_for_any_row() -> None:
    scores = np.array([[5.0, 4.0, 3.0, 2.0], [1.0, 2.0, 3.0, 4.0]])
    ids, _ = top_k(scores, 2, banned_items=np.array([0, 3]))
    np.testing.assert_array_equal(ids, [[1, 2], [2, 1]])


def test_banned_items_as_boolean_mask_are_never_returned() -> None:
    scores = np.array([[5.0, 4.0, 3.0, 2.0], [1.0, 2.0, 3.0, 4.0]])
    mask = np.array([True, False, False, True])
    ids, _ = top_k(scores, 2, banned_items=mask)
    np.testing.assert_array_equal(ids, [[1, 2], [2, 1]])


def test_empty_banned_list_bans_nothing() -> None:
    ids, _ = top_k(np.array([[1.0, 3.0, 2.0]]), 3, banned_items=np.array([], dtype=np.int64))
    np.testing.assert_array_equal(ids, [[1, 2, 0]])


def test_pads_with_minus_one_and_negative_infinity_when_k_exceeds_catalog() -> None:
    ids, values = top_k(np.array([[0.2, 0.5, 0.1]]), 5)
    np.testing.assert_array_equal(ids, [[1, 0, 2, -1, -1]])
    assert np.isfinite(values[0, :3]).all()
    assert np.all(values[0, 3:] == -np.inf)


def test_pads_when_exclusions_leave_fewer_than_k_items() -> None:
    scores = np.array([[0.4, 0.3, 0.2, 0.1], [0.4, 0.3, 0.2, 0.1]])
    exclude = sp.csr_matrix(np.array([[1, 1, 1, 0], [0, 0, 0, 0]], dtype=np.float32))
    ids, values = top_k(scores, 3, exclude=exclude, banned_items=np.array([2]))
    np.testing.assert_array_equal(ids, [[3, -1, -1], [0, 1, 3]])
    np.testing.assert_array_equal(values[0, 1:], [-np.inf, -np.inf])


def test_row_with_everything_excluded_is_all_padding() -> None:
    exclude = sp.csr_matrix(np.ones((1, 3), dtype=np.float32))
    ids, values = top_k(np.array([[1.0, 2.0, 3.0]]), 2, exclude=exclude)
    np.testing.assert_array_equal(ids, [[-1, -1]])
    assert np.all(values == -np.inf)


def test_nan_scores_are_rejected() -> None:
    with pytest.raises(ValueError, match="NaN"):
        top_k(np.array([[0.1, np.nan, 0.3]]), 2)


def test_exclude_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="shape"):
        top_k(np.zeros((2, 4)), 2, exclude=sp.csr_matrix((2, 5), dtype=np.float32))


def test_banned_mask_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="shape"):
        top_k(np.zeros((1, 4)), 2, banned_items=np.array([True, False]))


@pytest.mark.parametrize("banned", [[-1], [4]])
def test_banned_ids_outside_the_catalog_raise(banned: list[int]) -> None:
    with pytest.raises(ValueError, match="banned item ids"):
        top_k(np.zeros((1, 4)), 2, banned_items=np.array(banned))


def test_positive_infinity_scores_rank_first_and_are_not_dropped() -> None:
    # only -inf marks an excluded item; +inf is a legitimate (maximal) score
    ids, values = top_k(np.array([[1.0, np.inf, 2.0]]), 2)
    np.testing.assert_array_equal(ids, [[1, 2]])
    assert values[0, 0] == np.inf
