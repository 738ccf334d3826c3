"""Baselines: what popularity, ItemKNN, EASE, ALS and BPR each compute, and their errors.

The interface they share with every registered model (scores, recommend, persistence) is
specified once, in test_model_contract.py.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys_pref.models import ALS, BASELINES, EASE, ItemKNN, Popularity, Recommender, make_model
from recsys_pref.models.ease import ease_weights

N_USERS, N_ITEMS = 60, 40  # conftest.random_items


@pytest.fixture(scope="module")
def block_items() -> sp.csr_matrix:
    """Users 0-29 like items 0-19 only, users 30-59 items 20-39 only (each about 60% of them)."""
    rng = np.random.default_rng(1)
    dense = np.zeros((N_USERS, N_ITEMS), np.float32)
    half_users, half_items = N_USERS // 2, N_ITEMS // 2
    dense[:half_users, :half_items] = rng.random((half_users, half_items)) < 0.6
    dense[half_users:, half_items:] = rng.random((half_users, half_items)) < 0.6
    return sp.csr_matrix(dense)


@pytest.fixture(scope="module")
def fitted(fast_model, random_items: sp.csr_matrix) -> dict[str, Recommender]:
    return {name: fast_model(name).fit(random_items) for name in BASELINES}


# -- errors ---------------------------------------------------------------------------------


def test_unknown_model_name_error_lists_valid_models():
    with pytest.raises(ValueError, match="unknown model 'nope'.*als.*bpr.*ease.*itemknn.*popularity"):
        make_model("nope")


def test_unknown_hyperparameter_error_lists_valid_ones():
    with pytest.raises(ValueError, match="ease has no hyperparameter.*lambda.*valid: l2"):
        make_model("ease", **{"lambda": 3.0})


def test_dense_input_is_rejected(fitted, random_items):
    with pytest.raises(TypeError, match="scipy.sparse"):
        fitted["ease"].score(random_items[:2].toarray())
    with pytest.raises(TypeError, match="scipy.sparse"):
        make_model("als").fit(random_items.toarray())


def test_nan_values_are_rejected(fitted):
    history = sp.csr_matrix(np.array([[1.0, np.nan] + [0.0] * (N_ITEMS - 2)], np.float32))
    with pytest.raises(ValueError, match="NaN"):
        fitted["itemknn"].score(history)


def test_wrong_column_count_is_rejected(fitted):
    with pytest.raises(ValueError, match=f"3 item columns but the model knows {N_ITEMS} items"):
        fitted["bpr"].score(sp.csr_matrix(np.ones((1, 3), np.float32)))


def test_invalid_config_values_are_rejected():
    with pytest.raises(ValueError, match="factors"):
        make_model("als", factors=0)
    with pytest.raises(ValueError, match="l2"):
        make_model("ease", l2=0.0)


# -- popularity -----------------------------------------------------------------------------


def test_popularity_ranks_items_by_training_count():
    dense = np.zeros((6, 4), np.float32)
    dense[:5, 2] = 1  # item 2: 5 users
    dense[:3, 0] = 1  # item 0: 3 users
    dense[:1, 3] = 1  # item 3: 1 user
    model = Popularity().fit(sp.csr_matrix(dense))
    np.testing.assert_array_equal(model.score(sp.csr_matrix((2, 4), dtype=np.float32))[0], [3, 0, 5, 1])
    ids, _ = model.recommend(5, sp.csr_matrix((1, 4), dtype=np.float32), N=4)
    assert ids.tolist() == [2, 0, 3, 1]


# -- EASE -----------------------------------------------------------------------------------


def test_ease_weights_have_a_zero_diagonal(fitted):
    assert np.all(np.diag(fitted["ease"].B) == 0)


def test_ease_matches_the_hand_computed_closed_form_on_3_items():
    # X^T X + I = [[3,1,0],[1,3,1],[0,1,2]], det 13, inverse [[5,-2,1],[-2,6,-3],[1,-3,8]] / 13,
    # B_ij = -P_ij / P_jj off the diagonal
    X = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 1], [1, 0, 0]], np.float32))
    expected = np.array([[0, 1 / 3, -1 / 8], [2 / 5, 0, 3 / 8], [-1 / 5, 1 / 2, 0]])
    np.testing.assert_allclose(ease_weights(X, 1.0), expected, atol=1e-12)
    np.testing.assert_allclose(ease_weights(X, 1.0, np.float32), expected, atol=1e-6)
    model = EASE(l2=1.0).fit(X)
    np.testing.assert_allclose(model.score(X), X.toarray() @ expected, atol=1e-6)


def test_ease_matches_a_dense_inverse_on_random_data(random_items):
    X = random_items.toarray().astype(np.float64)
    P = np.linalg.inv(X.T @ X + 7.0 * np.eye(N_ITEMS))
    expected = np.eye(N_ITEMS) - P / np.diag(P)[None, :]
    np.testing.assert_allclose(ease_weights(random_items, 7.0), expected, atol=1e-10)


def test_ease_refuses_catalogs_above_max_items(random_items):
    with pytest.raises(ValueError, match=r"dense 40 x 40 item matrix.*max_items=39"):
        EASE(max_items=39).fit(random_items)


# -- ItemKNN --------------------------------------------------------------------------------


def test_itemknn_new_user_scores_equal_known_user_scores(fitted, random_items):
    users = np.arange(10)
    model = fitted["itemknn"]
    np.testing.assert_array_equal(model.score(random_items[users], users), model.score(random_items[users]))


@pytest.mark.filterwarnings("ignore::implicit.utils.ParameterWarning")
def test_itemknn_matches_implicit_recommendations(random_items):
    from implicit.nearest_neighbours import CosineRecommender

    reference = CosineRecommender(K=20)
    reference.fit(random_items, show_progress=False)
    users = np.arange(8)
    expected, _ = reference.recommend(users, random_items[users], N=5)
    ids, _ = ItemKNN(K=20).fit(random_items).recommend(users, random_items[users], N=5)
    np.testing.assert_array_equal(ids, expected)


# -- ALS ------------------------------------------------------------------------------------


def test_als_fold_in_of_a_training_user_reproduces_its_factors(random_items):
    model = ALS(factors=8, regularization=0.1, alpha=5.0, iterations=40).fit(random_items)
    users = np.arange(N_USERS)
    trained, folded = model.user_factors[users], model.fold_in(random_items[users])
    cosine = (trained * folded).sum(1) / np.linalg.norm(trained, axis=1) / np.linalg.norm(folded, axis=1)
    assert cosine.min() > 0.95
    # same length too: alpha is applied exactly once (implicit scales inside recalculate_user)
    ratio = np.linalg.norm(folded, axis=1) / np.linalg.norm(trained, axis=1)
    assert np.abs(ratio - 1).max() < 0.05


def test_als_known_user_scores_are_dot_products_of_trained_factors(fitted, random_items):
    model = fitted["als"]
    users = np.array([3, 17])
    np.testing.assert_allclose(
        model.score(random_items[users], users), model.user_factors[users] @ model.item_factors.T, rtol=1e-6
    )


# -- BPR ------------------------------------------------------------------------------------


def test_bpr_fold_in_keeps_the_bias_coordinate_at_one(fitted, random_items):
    model = fitted["bpr"]
    assert model.item_factors.shape == (N_ITEMS, model.config.factors + 1)
    np.testing.assert_array_equal(model.user_factors[:, -1], 1.0)
    np.testing.assert_array_equal(model.fold_in(random_items[:5])[:, -1], 1.0)


def test_bpr_fold_in_solves_the_weighted_ridge_regression(fitted, random_items):
    model = fitted["bpr"]
    alpha, lam = model.config.fold_in_alpha, model.config.fold_in_regularization
    V, b = model.item_factors[:, :-1].astype(np.float64), model.item_factors[:, -1].astype(np.float64)
    p = random_items[4].toarray().ravel()
    c = np.where(p > 0, alpha * p, 1.0)
    # unknowns [w, a]: a the unpenalised intercept
    design = np.hstack([V, np.ones((N_ITEMS, 1))])
    penalty = np.diag(np.r_[np.full(V.shape[1], lam), 0.0])
    solution = np.linalg.solve(design.T @ (c[:, None] * design) + penalty, design.T @ (c * (p - b)))
    np.testing.assert_allclose(model.fold_in(random_items[4:5])[0, :-1], solution[:-1], rtol=1e-3, atol=1e-5)


# -- planted structure ----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(set(BASELINES) - {"popularity"}))
def test_models_recommend_from_the_users_own_block(name, fast_model, block_items):
    model = fast_model(name).fit(block_items)
    users = np.array([0, 5, 29, 30, 44, 59])
    own_block = (users >= N_USERS // 2).astype(int)
    new_history = np.zeros((2, N_ITEMS), np.float32)
    new_history[0, [1, 4, 7]] = 1.0  # a new user from the first block
    new_history[1, [22, 30, 38]] = 1.0  # and one from the second
    new_history = sp.csr_matrix(new_history)
    known_ids, _ = model.recommend(users, block_items[users], N=5)
    new_ids, _ = model.recommend(np.zeros(2, np.int64), new_history, N=5, recalculate_user=True)
    for ids, blocks in ((known_ids, own_block), (new_ids, np.array([0, 1]))):
        assert (ids >= 0).all()
        assert ((ids // (N_ITEMS // 2)) == blocks[:, None]).all(), f"{name} leaves the user's block: {ids}"
