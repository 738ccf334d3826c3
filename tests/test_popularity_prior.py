"""The popularity prior (models.persona.popularity): b_i = eta log(1 + n_i) in the scorer, eta
fixed or chosen on the fine-tune's validation users, and refusals of settings it cannot take."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys_pref.models.persona import InferenceSettings, PersonaConfig, PersonaModel
from recsys_pref.models.persona.popularity import (
    POPULARITY_PRIORS,
    choose_popularity_prior,
    item_user_counts,
    popularity_bias,
)

SMALL = dict(n_bases=4, embedding_dim=4, als_iterations=5, progress=False)
SETTINGS = InferenceSettings(1, regularization=2.0, alpha=3.0, em_iterations=0)


def random_matrix(n_users: int = 120, n_items: int = 30, seed: int = 0) -> sp.csr_matrix:
    """Positives whose item popularity falls steeply with the item id; every user has 4 items."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_items + 1)
    rows = [rng.choice(n_items, 4, replace=False, p=popularity / popularity.sum()) for _ in range(n_users)]
    dense = np.zeros((n_users, n_items), np.float32)
    dense[np.arange(n_users)[:, None], np.array(rows)] = 1.0
    return sp.csr_matrix(dense)


def held_out(fold_in: sp.csr_matrix, items: slice) -> sp.csr_matrix:
    """Targets: the given items, for every user whose history does not hold them."""
    targets = np.zeros(fold_in.shape, np.float32)
    targets[:, items] = 1.0
    return sp.csr_matrix(targets * (fold_in.toarray() == 0))


def test_counts_are_users_with_a_positive_and_ignore_stored_zeros() -> None:
    matrix = sp.csr_matrix(np.array([[1.0, 0.0, 2.0], [1.0, 0.0, 0.0]], np.float32))
    matrix.data[1] = 0.0  # a stored zero for item 2
    np.testing.assert_array_equal(item_user_counts(matrix), [2, 0, 0])


def test_the_bias_is_eta_times_log_one_plus_count() -> None:
    matrix = random_matrix()
    counts = np.asarray((matrix > 0).sum(axis=0)).ravel()
    np.testing.assert_allclose(popularity_bias(matrix, 0.05), 0.05 * np.log1p(counts), rtol=1e-6)
    assert not popularity_bias(matrix, 0.0).any()


def test_a_fixed_prior_adds_exactly_the_bias_to_every_score() -> None:
    matrix = random_matrix()
    plain = PersonaModel(PersonaConfig(**SMALL)).fit(matrix)
    prior = PersonaModel(PersonaConfig(popularity_prior=0.05, **SMALL)).fit(matrix)
    history = matrix[:5]
    np.testing.assert_allclose(prior.score(history) - plain.score(history), np.broadcast_to(
        popularity_bias(matrix, 0.05), (5, matrix.shape[1])), atol=1e-5)


def test_auto_prefers_a_prior_when_the_held_out_items_are_the_popular_ones() -> None:
    train = random_matrix()
    rewards = np.random.default_rng(1).normal(size=(train.shape[1], 4)).astype(np.float32)
    fold_in = train[:40]
    targets = held_out(fold_in, slice(0, 2))  # the two most popular items
    eta, summary = choose_popularity_prior(rewards, train, fold_in, targets, SETTINGS, temperature=0.1)
    assert eta > 0 and summary["popularity_prior"] == eta
    assert summary["popularity_prior_val_ndcg@100"] > summary["no_popularity_prior_val_ndcg@100"]


def test_auto_keeps_no_prior_when_the_held_out_items_are_the_rare_ones() -> None:
    train = random_matrix()
    rewards = np.random.default_rng(1).normal(size=(train.shape[1], 4)).astype(np.float32)
    fold_in = train[:40]
    targets = held_out(fold_in, slice(-2, None))  # the two rarest items
    eta, _ = choose_popularity_prior(rewards, train, fold_in, targets, SETTINGS, temperature=0.1)
    assert eta == 0.0


def test_auto_prior_is_chosen_at_fit_and_stored_as_the_item_bias(tmp_path) -> None:
    matrix = random_matrix()
    config = PersonaConfig(finetune="softmax", finetune_epochs=1, finetune_batch_size=32, validation_share=0.2,
                           popularity_prior="auto", **SMALL)
    model = PersonaModel(config).fit(matrix)
    eta = model.training_summary["popularity_prior"]
    assert eta in POPULARITY_PRIORS
    np.testing.assert_allclose(model.shared.item_bias, popularity_bias(matrix, eta))
    restored = PersonaModel.load(model.save(tmp_path / "model"))
    np.testing.assert_array_equal(restored.shared.item_bias, model.shared.item_bias)


def test_choosing_without_validation_users_is_refused() -> None:
    train = random_matrix()
    empty = sp.csr_matrix((0, train.shape[1]), dtype=np.float32)
    with pytest.raises(ValueError, match="validation users"):
        choose_popularity_prior(np.ones((train.shape[1], 4), np.float32), train, empty, empty, SETTINGS, 0.1)


@pytest.mark.parametrize("bad, message", [
    ({"popularity_prior": -0.1}, "popularity_prior must be a number >= 0"),
    ({"popularity_prior": float("nan")}, "popularity_prior must be a number >= 0"),
    ({"popularity_prior": "popular"}, "popularity_prior must be a number >= 0"),
    ({"popularity_prior": "auto"}, "needs finetune='softmax'"),
    ({"popularity_prior": "auto", "finetune": "softmax", "validation_share": 0.0}, "validation_share > 0"),
])
def test_bad_popularity_priors_are_refused(bad: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PersonaConfig(**bad)
