"""Specification of the shared Recommender interface in recsys_pref.models.base."""
from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
import scipy.sparse as sp

from recsys_pref.models.base import NotFittedError, Recommender, check_user_items

N_USERS, N_ITEMS = 3, 6


class Descending(Recommender):
    """Scores item i as n_items - i for every user (item 0 best); records the userids
    `_score` receives."""

    name: ClassVar[str] = "descending"

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[np.ndarray | None] = []

    def _fit(self, user_items: sp.csr_matrix) -> None:
        self.fitted_on = user_items

    def _score(self, user_items: sp.csr_matrix, userids: np.ndarray | None) -> np.ndarray:
        self.calls.append(userids)
        base = np.arange(self.n_items, 0, -1, dtype=np.float32)
        return np.tile(base, (user_items.shape[0], 1))


def interactions(rows: list[list[int]], n_items: int = N_ITEMS) -> sp.csr_matrix:
    dense = np.zeros((len(rows), n_items), np.float32)
    for row, items in enumerate(rows):
        dense[row, items] = 1
    return sp.csr_matrix(dense)


@pytest.fixture
def model() -> Descending:
    return Descending().fit(interactions([[0, 1], [2], [3, 4, 5]]))


def test_fit_records_the_training_shape(model: Descending) -> None:
    assert (model.n_users, model.n_items) == (N_USERS, N_ITEMS)


def test_fit_returns_the_model() -> None:
    model = Descending()
    assert model.fit(interactions([[0]])) is model


def test_single_user_recommend_returns_one_dimensional_arrays(model: Descending) -> None:
    ids, scores = model.recommend(0, interactions([[]]), N=3)
    assert ids.shape == scores.shape == (3,)
    np.testing.assert_array_equal(ids, [0, 1, 2])
    np.testing.assert_array_equal(scores, [6.0, 5.0, 4.0])


def test_single_user_recommend_skips_already_liked_items(model: Descending) -> None:
    ids, _ = model.recommend(0, interactions([[0, 2]]), N=3)
    np.testing.assert_array_equal(ids, [1, 3, 4])


def test_already_liked_items_are_kept_when_not_filtered(model: Descending) -> None:
    ids, _ = model.recommend(0, interactions([[0, 2]]), N=3, filter_already_liked_items=False)
    np.testing.assert_array_equal(ids, [0, 1, 2])


def test_single_user_recommend_returns_fewer_than_n_instead_of_padding(model: Descending) -> None:
    ids, scores = model.recommend(2, interactions([[0, 1, 2, 3]]), N=5)
    np.testing.assert_array_equal(ids, [4, 5])
    assert len(scores) == 2 and np.isfinite(scores).all()


def test_batch_recommend_returns_n_columns_padded_with_minus_one(model: Descending) -> None:
    ids, scores = model.recommend(np.array([0, 2]), interactions([[0], [0, 1, 2, 3]]), N=3)
    assert ids.shape == scores.shape == (2, 3)
    np.testing.assert_array_equal(ids, [[1, 2, 3], [4, 5, -1]])
    assert scores[1, 2] == -np.inf


def test_filter_items_by_id_are_never_returned(model: Descending) -> None:
    ids, _ = model.recommend(0, interactions([[1]]), N=3, filter_items=np.array([0, 3]))
    np.testing.assert_array_equal(ids, [2, 4, 5])


def test_filter_items_by_boolean_mask_are_never_returned(model: Descending) -> None:
    mask = np.array([True, False, True, False, False, False])
    ids, _ = model.recommend(np.array([1]), interactions([[]]), N=2, filter_items=mask)
    np.testing.assert_array_equal(ids, [[1, 3]])


def test_recommend_passes_the_userids_to_score_for_known_users(model: Descending) -> None:
    model.recommend(np.array([2, 0]), interactions([[], []]), N=2)
    np.testing.assert_array_equal(model.calls[-1], [2, 0])


def test_recalculate_user_passes_no_userids_to_score(model: Descending) -> None:
    model.recommend(1, interactions([[0]]), N=2, recalculate_user=True)
    assert model.calls[-1] is None


def test_recalculate_user_allows_users_unseen_in_fit(model: Descending) -> None:
    ids, _ = model.recommend(99, interactions([[0]]), N=2, recalculate_user=True)
    np.testing.assert_array_equal(ids, [1, 2])


def test_score_returns_one_row_per_user(model: Descending) -> None:
    assert model.score(interactions([[0], [1]])).shape == (2, N_ITEMS)


def test_using_an_unfitted_model_raises_not_fitted_error() -> None:
    with pytest.raises(NotFittedError, match="fit"):
        Descending().score(interactions([[0]]))
    with pytest.raises(NotFittedError):
        Descending().recommend(0, interactions([[0]]))


def test_dense_input_raises_type_error(model: Descending) -> None:
    dense = np.zeros((1, N_ITEMS), np.float32)
    with pytest.raises(TypeError, match="scipy.sparse"):
        Descending().fit(np.ones((2, N_ITEMS)))
    with pytest.raises(TypeError):
        model.recommend(0, dense)
    with pytest.raises(TypeError):
        model.score(dense)


def test_nan_values_raise_value_error(model: Descending) -> None:
    bad = sp.csr_matrix(np.array([[np.nan, 1, 0, 0, 0, 0]], np.float32))
    with pytest.raises(ValueError, match="NaN"):
        model.recommend(0, bad)
    with pytest.raises(ValueError, match="NaN"):
        Descending().fit(bad)


def test_negative_values_raise_value_error() -> None:
    with pytest.raises(ValueError, match="negative"):
        check_user_items(sp.csr_matrix(np.array([[1.0, -1.0]])))


def test_wrong_item_count_raises_value_error(model: Descending) -> None:
    with pytest.raises(ValueError, match="item columns"):
        model.recommend(0, interactions([[0]], n_items=N_ITEMS + 1))
    with pytest.raises(ValueError, match="item columns"):
        model.score(interactions([[0]], n_items=N_ITEMS - 1))


@pytest.mark.parametrize("userid", [-1, N_USERS])
def test_userids_out_of_range_raise_value_error(model: Descending, userid: int) -> None:
    with pytest.raises(ValueError, match="userids"):
        model.recommend(userid, interactions([[0]]))


def test_user_items_rows_must_match_the_number_of_users(model: Descending) -> None:
    with pytest.raises(ValueError, match="one row per user"):
        model.recommend(np.array([0, 1]), interactions([[0]]))


@pytest.mark.parametrize("n", [0, -3])
def test_n_below_one_raises_value_error(model: Descending, n: int) -> None:
    with pytest.raises(ValueError, match="N must be"):
        model.recommend(0, interactions([[0]]), N=n)


def test_fitting_an_empty_matrix_raises_value_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        Descending().fit(sp.csr_matrix((3, 4), dtype=np.float32))


def test_hyperparameters_of_a_model_without_config_are_empty(model: Descending) -> None:
    assert model.hyperparameters() == {}
