"""Specification of held-out evaluation in recsys_pref.evaluation.evaluate."""
from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
import scipy.sparse as sp

from recsys_pref.data.splits import HeldOut
from recsys_pref.evaluation.evaluate import evaluate, recommend_held_out
from recsys_pref.models.base import Recommender


class ScriptedRecommender(Recommender):
    """Scores the held-out users from a fixed (n_held_out, n_items) matrix, in call order,
    so the evaluation's batching is followed; records the userids it is given."""

    name: ClassVar[str] = "scripted"

    def __init__(self, scores: np.ndarray) -> None:
        super().__init__()
        self.scripted = np.asarray(scores, dtype=np.float32)
        self.position = 0
        self.userids_seen: list[np.ndarray | None] = []

    def _fit(self, user_items: sp.csr_matrix) -> None:
        pass

    def _score(self, user_items: sp.csr_matrix, userids: np.ndarray | None) -> np.ndarray:
        n = user_items.shape[0]
        out = self.scripted[self.position : self.position + n]
        self.position += n
        self.userids_seen.append(userids)
        return out.copy()


def oracle(held_out: HeldOut) -> ScriptedRecommender:
    """Scores = the users' own targets: a perfect recommender."""
    model = ScriptedRecommender(held_out.targets.toarray())
    return model.fit(sp.csr_matrix(np.ones((1, held_out.targets.shape[1]), np.float32)))


def csr(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    dense = np.zeros((len(rows), n_items), np.float32)
    for row, items in enumerate(rows):
        dense[row, items] = 1
    return sp.csr_matrix(dense)


def held_out(fold_in: list[list[int]], targets: list[list[int]], n_items: int, known: bool = False) -> HeldOut:
    return HeldOut(np.arange(len(fold_in)), csr(fold_in, n_items), csr(targets, n_items), known)


@pytest.fixture
def random_held_out() -> HeldOut:
    """30 users over 40 items: 6 fold-in items and 3 targets each, disjoint."""
    rng = np.random.default_rng(0)
    fold_in, targets = [], []
    for _ in range(30):
        items = rng.choice(40, size=9, replace=False)
        fold_in.append(items[:6].tolist())
        targets.append(items[6:].tolist())
    return held_out(fold_in, targets, 40)


def test_oracle_gets_perfect_recall_and_ndcg(random_held_out: HeldOut) -> None:
    metrics = evaluate(oracle(random_held_out), random_held_out).metrics
    for k in (10, 20, 50, 100):
        assert metrics[f"recall@{k}"] == pytest.approx(1.0)
        assert metrics[f"ndcg@{k}"] == pytest.approx(1.0)


def test_oracle_is_perfect_across_several_batches(random_held_out: HeldOut) -> None:
    recommended = recommend_held_out(oracle(random_held_out), random_held_out, 3, batch_size=7)
    for row, targets in enumerate(random_held_out.targets.tolil().rows):
        assert set(recommended[row].tolist()) == set(targets)


def test_fold_in_items_are_never_recommended(random_held_out: HeldOut) -> None:
    # a model that likes the fold-in items best of all
    scores = random_held_out.fold_in.toarray() * 10 + random_held_out.targets.toarray()
    model = ScriptedRecommender(scores).fit(sp.csr_matrix(np.ones((1, 40), np.float32)))
    result = evaluate(model, random_held_out)
    for row, history in enumerate(random_held_out.fold_in.tolil().rows):
        assert not set(result.recommended[row].tolist()) & set(history)
    assert result.metrics["recall@10"] == pytest.approx(1.0)


def test_recommended_has_one_row_per_user_and_max_k_columns(random_held_out: HeldOut) -> None:
    result = evaluate(oracle(random_held_out), random_held_out, ks=(5, 10))
    assert result.recommended.shape == (30, 10)
    # 40 items - 6 fold-in = 34 candidates >= 10: no padding
    assert (result.recommended >= 0).all()


def test_user_whose_every_catalog_item_is_in_fold_in_still_counts_with_zero() -> None:
    catalog = np.array([True, True, True, False])
    held = held_out(fold_in=[[0], [0, 1, 2]], targets=[[1], [3]], n_items=4)
    result = evaluate(oracle(held), held, catalog=catalog, ks=(2,))
    np.testing.assert_array_equal(result.recommended[1], [-1, -1])
    assert result.metrics["n_users"] == 2
    assert result.metrics["recall@2"] == pytest.approx(0.5)
    assert result.metrics["ndcg@2"] == pytest.approx(0.5)


def test_items_outside_the_catalog_are_never_recommended(random_held_out: HeldOut) -> None:
    catalog = np.ones(40, bool)
    catalog[::3] = False
    scores = np.zeros((30, 40), np.float32)
    scores[:, ~catalog] = 100.0  # the model prefers items outside the catalog
    model = ScriptedRecommender(scores).fit(sp.csr_matrix(np.ones((1, 40), np.float32)))
    result = evaluate(model, random_held_out, catalog=catalog, ks=(10,))
    recommended = result.recommended[result.recommended >= 0]
    assert recommended.size > 0
    assert catalog[recommended].all()


def test_metrics_have_the_reported_keys(random_held_out: HeldOut) -> None:
    metrics = evaluate(oracle(random_held_out), random_held_out).metrics
    for key in ("ndcg@10", "ndcg@100", "recall@20", "recall@50", "coverage@10", "recommend_users_per_s", "n_users"):
        assert key in metrics
    assert metrics["recommend_users_per_s"] > 0
    assert metrics["n_users"] == 30


def test_unknown_users_are_scored_without_userids(random_held_out: HeldOut) -> None:
    model = oracle(random_held_out)
    evaluate(model, random_held_out)
    assert model.userids_seen and all(userids is None for userids in model.userids_seen)


def test_known_users_are_scored_with_their_userids() -> None:
    held = HeldOut(np.array([2, 0]), csr([[0], [1]], 4), csr([[2], [3]], 4), known=True)
    model = ScriptedRecommender(held.targets.toarray()).fit(sp.csr_matrix(np.ones((3, 4), np.float32)))
    evaluate(model, held, ks=(2,))
    np.testing.assert_array_equal(model.userids_seen[0], [2, 0])


def test_recall_denominator_targets_divides_by_all_targets() -> None:
    held = held_out(fold_in=[[0]], targets=[[1, 2, 3, 4]], n_items=6)
    result = evaluate(oracle(held), held, ks=(2,), recall_denominator="targets")
    assert result.metrics["recall@2"] == pytest.approx(0.5)
    result = evaluate(oracle(held), held, ks=(2,), recall_denominator="min_k_targets")
    assert result.metrics["recall@2"] == pytest.approx(1.0)


def test_item_categories_add_diversity_and_calibration(random_held_out: HeldOut) -> None:
    categories = np.zeros((40, 2))
    categories[np.arange(40), np.arange(40) % 2] = 1.0
    metrics = evaluate(oracle(random_held_out), random_held_out, item_categories=categories).metrics
    assert "diversity@10" in metrics and "calibration_kl@10" in metrics
    plain = evaluate(oracle(random_held_out), random_held_out).metrics
    assert "diversity@10" not in plain


def test_empty_held_out_group_raises() -> None:
    empty = HeldOut(np.zeros(0, np.int64), csr([], 4), csr([], 4), known=False)
    model = ScriptedRecommender(np.zeros((0, 4))).fit(sp.csr_matrix(np.ones((1, 4), np.float32)))
    with pytest.raises(ValueError, match="no held-out users"):
        evaluate(model, empty)
