"""The softmax fine-tune of the shared side (models.persona.finetune): it trains what inference
computes, keeps its validation users' targets out of training, never keeps an epoch that
validation ranks below the ALS start, and leaves readable (orthonormal) bases."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recsys_pref.data import make_synthetic
from recsys_pref.models.persona import InferenceSettings, PersonaConfig, PersonaModel, infer_states
from recsys_pref.models.persona.finetune import (
    SharedSideFinetune,
    carve_validation,
    holdout_masks,
    padded_histories,
)

FINETUNE = dict(n_bases=4, embedding_dim=4, als_iterations=5, finetune="softmax", finetune_epochs=3,
                finetune_batch_size=32, validation_share=0.2, progress=False)


def tiny_matrix(n_users: int = 80, n_items: int = 40, seed: int = 0) -> sp.csr_matrix:
    """Random binary positives, every user with at least 3 items."""
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_users, n_items)) < 0.15).astype(np.float32)
    dense[np.arange(n_users)[:, None], rng.integers(0, n_items, (n_users, 3))] = 1.0
    return sp.csr_matrix(dense)


def test_holdout_keeps_a_seen_item_in_every_history_and_targets_apart() -> None:
    mask = torch.tensor([[True, True, True, False], [True, False, False, False]])
    torch.manual_seed(0)
    seen, target = holdout_masks(mask, share=0.99)
    assert seen.any(dim=1).all()
    assert not (seen & target).any() and torch.equal(seen | target, mask)


def test_the_training_state_is_the_fold_in_state() -> None:
    """The state the loss differentiates is inference's M = 1 fold-in of the seen items."""
    matrix = tiny_matrix()
    rewards = np.random.default_rng(1).normal(size=(matrix.shape[1], 4)).astype(np.float32)
    settings = InferenceSettings(1, regularization=2.0, alpha=3.0, em_iterations=0)
    empty = sp.csr_matrix((0, matrix.shape[1]), dtype=np.float32)
    module = SharedSideFinetune(rewards, PersonaConfig(**FINETUNE), settings, empty, empty)
    rows = np.arange(10)
    items, weights, mask = padded_histories(matrix, rows)
    torch.manual_seed(0)
    seen, _ = holdout_masks(mask, 0.3)
    with torch.no_grad():
        trained = module.user_states(module.item_rewards(), items, weights, seen)[:, 0]  # (10, K)
    seen_rows = np.zeros(matrix[rows].shape, np.float32)
    for row in range(len(rows)):
        seen_rows[row, items[row][seen[row]].numpy()] = weights[row][seen[row]].numpy()
    folded, _ = infer_states(sp.csr_matrix(seen_rows), rewards, settings)
    np.testing.assert_allclose(trained.numpy(), folded[:, 0], rtol=1e-4, atol=1e-5)


def test_validation_targets_are_carved_out_of_training() -> None:
    matrix = tiny_matrix()
    train, fold_in, targets = carve_validation(matrix, share=0.25, seed=0)
    assert fold_in.shape[0] == targets.shape[0] == 20
    assert train.nnz + targets.nnz == matrix.nnz
    assert (train.multiply(matrix) != 0).sum() == train.nnz  # training holds only real positives
    assert fold_in.multiply(targets).nnz == 0


def test_fine_tuned_bases_stay_orthonormal_and_cosine_rewards_unit() -> None:
    model = PersonaModel(**FINETUNE, finetune_cosine=True).fit(tiny_matrix())
    bases = model.shared.bases
    np.testing.assert_allclose(bases @ bases.T, np.eye(len(bases)), atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(model.shared.rewards, axis=1), 1.0, atol=1e-4)


def test_no_epoch_below_the_start_on_validation_is_kept() -> None:
    """On planted data, a ruinous step size makes every epoch worse than ALS's start: the start is kept."""
    matrix = make_synthetic(n_users=200, n_items=60, n_personas=3, density=0.1, seed=0).to_csr()
    start = PersonaModel(**(FINETUNE | {"finetune_epochs": 1, "finetune_learning_rate": 1e-12})).fit(matrix)
    ruined = PersonaModel(**(FINETUNE | {"finetune_learning_rate": 50.0})).fit(matrix)
    summary = ruined.training_summary
    assert summary["finetune_best_epoch"] == -1
    assert summary["finetune_val_ndcg@100"] <= summary["finetune_start_val_ndcg@100"]
    np.testing.assert_allclose(ruined.score(matrix[:5]), start.score(matrix[:5]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("negatives", [0, 16])
def test_fine_tune_trains_with_full_and_sampled_softmax(negatives: int) -> None:
    model = PersonaModel(**FINETUNE, finetune_negatives=negatives).fit(tiny_matrix())
    assert model.training_summary["finetune_steps"] > 0
    assert np.isfinite(model.score(tiny_matrix()[:3])).all()


@pytest.mark.parametrize("bad", [{"finetune": "adam"}, {"finetune_holdout": 1.0}, {"finetune_negatives": -1},
                                 {"devices": 0}])
def test_bad_finetune_settings_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        PersonaConfig(**bad)
