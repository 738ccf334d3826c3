"""The contract every registered model keeps (each name in MODELS, the persona variants
included): scores, recommend, hyperparameters, errors, and a save/load round trip that gives
the same recommendations.

A new model joins the suite by being registered in MODELS and given small settings in
FAST_PARAMS (tests/conftest.py).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recsys_pref.models import MODELS, Recommender, make_model
from recsys_pref.models.base import NotFittedError

NAMES = sorted(MODELS)
N_USERS, N_ITEMS = 60, 40  # conftest.random_items


@pytest.fixture(scope="module", params=NAMES)
def fitted(request: pytest.FixtureRequest, fast_model, random_items: sp.csr_matrix) -> Recommender:
    return fast_model(request.param).fit(random_items)


def test_every_registered_model_has_fast_test_settings(fast_params) -> None:
    assert sorted(fast_params) == NAMES


def test_scores_known_users_as_finite_float32_of_catalog_width(fitted, random_items):
    users = np.arange(7)
    scores = fitted.score(random_items[users], users)
    assert scores.shape == (7, N_ITEMS) and scores.dtype == np.float32
    assert np.isfinite(scores).all()


def test_scores_new_users_as_finite_float32_of_catalog_width(fitted):
    history = sp.csr_matrix(np.eye(5, N_ITEMS, k=3, dtype=np.float32) + np.eye(5, N_ITEMS, k=11, dtype=np.float32))
    scores = fitted.score(history)
    assert scores.shape == (5, N_ITEMS) and scores.dtype == np.float32
    assert np.isfinite(scores).all()


def test_new_user_with_empty_history_gets_finite_scores(fitted):
    scores = fitted.score(sp.csr_matrix((2, N_ITEMS), dtype=np.float32))
    assert scores.shape == (2, N_ITEMS) and np.isfinite(scores).all()


def test_recommend_never_returns_already_liked_items(fitted, random_items):
    users = np.arange(N_USERS)
    for recalculate in (False, True):
        ids, _ = fitted.recommend(users, random_items, N=10, recalculate_user=recalculate)
        for user in users:
            liked = set(random_items[user].indices)
            assert not liked & set(ids[user][ids[user] >= 0].tolist())


def test_recommend_returns_fewer_items_rather_than_seen_ones(fitted):
    history = np.ones((1, N_ITEMS), np.float32)
    history[0, [4, 9, 30]] = 0.0  # three unseen items left
    ids, scores = fitted.recommend(0, sp.csr_matrix(history), N=10)
    assert sorted(ids.tolist()) == [4, 9, 30]
    assert len(scores) == 3 and np.isfinite(scores).all()


def test_single_user_recommend_returns_n_items_as_one_dimensional_arrays(fitted, random_items):
    ids, scores = fitted.recommend(4, random_items[[4]], N=5)
    assert ids.shape == scores.shape == (5,)
    assert np.all(np.diff(scores) <= 0), "scores are not in descending order"


@pytest.mark.parametrize("name", NAMES)
def test_hyperparameters_are_the_config_fields(name, fast_model, fast_params):
    model = fast_model(name)
    assert model.hyperparameters().items() >= fast_params[name].items()
    assert model.name == name


@pytest.mark.parametrize("name", NAMES)
def test_grid_has_at_most_8_configurations_that_all_build(name):
    grid = MODELS[name].grid
    assert 1 <= len(grid) <= 8
    for params in grid:
        assert make_model(name, **params).hyperparameters().items() >= params.items()


@pytest.mark.parametrize("name", NAMES)
def test_fitting_on_an_empty_matrix_raises(name, fast_model):
    with pytest.raises(ValueError, match="empty"):
        fast_model(name).fit(sp.csr_matrix((5, N_ITEMS), dtype=np.float32))


@pytest.mark.parametrize("name", NAMES)
def test_scoring_or_saving_before_fit_raises_not_fitted_error(name, fast_model, tmp_path: Path):
    with pytest.raises(NotFittedError):
        fast_model(name).score(sp.csr_matrix((1, N_ITEMS), dtype=np.float32))
    with pytest.raises(NotFittedError):
        fast_model(name).save(tmp_path / "model")
    assert not (tmp_path / "model").exists()


# -- persistence ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reloaded(fitted: Recommender, tmp_path_factory: pytest.TempPathFactory) -> Recommender:
    return Recommender.load(fitted.save(tmp_path_factory.mktemp("artifact") / fitted.name))


def test_a_reloaded_model_is_the_same_class_with_the_same_config(fitted, reloaded):
    assert type(reloaded) is type(fitted) and reloaded.name == fitted.name
    assert reloaded.config == fitted.config
    assert (reloaded.n_users, reloaded.n_items) == (fitted.n_users, fitted.n_items)


def test_a_reloaded_model_recommends_the_same_to_known_users(fitted, reloaded, random_items):
    users = np.arange(N_USERS)
    expected, expected_scores = fitted.recommend(users, random_items, N=10)
    got, scores = reloaded.recommend(users, random_items, N=10)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(scores, expected_scores)


def test_a_reloaded_model_recommends_the_same_to_new_users(fitted, reloaded, random_items):
    users = np.arange(N_USERS)
    expected, expected_scores = fitted.recommend(users, random_items, N=10, recalculate_user=True)
    got, scores = reloaded.recommend(users, random_items, N=10, recalculate_user=True)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(scores, expected_scores)


def test_the_model_class_loads_its_own_artifact(fitted, reloaded, tmp_path: Path):
    again = type(reloaded).load(reloaded.save(tmp_path / "again"))
    assert type(again) is type(fitted) and again.config == fitted.config
