"""Specification of the per-user ranking accuracy metrics in recsys_pref.core.metrics."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from recsys_pref.core.metrics import (
    hit_rate_at_k,
    map_at_k,
    mean_ignoring_nan,
    mrr_at_k,
    ndcg_at_k,
    ranking_metrics,
    recall_at_k,
)


def discount(position: int) -> float:
    """Binary DCG gain of a hit at 1-based position."""
    return 1.0 / math.log2(position + 1)


def make_targets(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    """Binary CSR with one row per user listing the relevant items."""
    dense = np.zeros((len(rows), n_items))
    for user, items in enumerate(rows):
        dense[user, items] = 1.0
    return sp.csr_matrix(dense)


# Hand-worked fixture, k = 3, n_items = 6.
#   user 0: targets {0, 2}, list [0, 1, 2]   -> hits at ranks 1 and 3
#   user 1: targets {5},    list [3, -1, -1] -> short list, no hit
#   user 2: no targets,     list [0, 1, 2]   -> NaN everywhere
#   user 3: targets {1, 3, 4}, no recommendations -> 0 everywhere
#   user 4: targets {4},    list [1, 4, -1]  -> single hit at rank 2
RECOMMENDED = np.array(
    [[0, 1, 2], [3, -1, -1], [0, 1, 2], [-1, -1, -1], [1, 4, -1]], dtype=np.int64
)
TARGETS = make_targets([[0, 2], [5], [], [1, 3, 4], [4]], n_items=6)


def test_recall_divides_hits_by_min_of_k_and_target_count():
    expected = [1.0, 0.0, np.nan, 0.0, 1.0]
    np.testing.assert_allclose(recall_at_k(RECOMMENDED, TARGETS, 3), expected)


def test_ndcg_uses_binary_gains_and_ideal_over_min_k_targets():
    expected = [
        (discount(1) + discount(3)) / (discount(1) + discount(2)),
        0.0,
        np.nan,
        0.0,
        discount(2) / discount(1),
    ]
    np.testing.assert_allclose(ndcg_at_k(RECOMMENDED, TARGETS, 3), expected)


def test_hit_rate_is_one_when_any_top_k_item_is_relevant():
    np.testing.assert_allclose(
        hit_rate_at_k(RECOMMENDED, TARGETS, 3), [1.0, 0.0, np.nan, 0.0, 1.0]
    )


def test_mrr_is_reciprocal_rank_of_first_hit():
    np.testing.assert_allclose(mrr_at_k(RECOMMENDED, TARGETS, 3), [1.0, 0.0, np.nan, 0.0, 0.5])


def test_map_averages_precision_at_hit_ranks_over_min_k_targets():
    expected = [(1 / 1 + 2 / 3) / 2, 0.0, np.nan, 0.0, (1 / 2) / 1]
    np.testing.assert_allclose(map_at_k(RECOMMENDED, TARGETS, 3), expected)


def test_every_metric_returns_float64_per_user():
    for metric in (recall_at_k, ndcg_at_k, hit_rate_at_k, mrr_at_k, map_at_k):
        values = metric(RECOMMENDED, TARGETS, 3)
        assert values.shape == (5,) and values.dtype == np.float64


def test_only_the_first_k_columns_count():
    # user 0 hits at ranks 1 and 3; at k = 2 only the first hit counts.
    assert recall_at_k(RECOMMENDED, TARGETS, 2)[0] == pytest.approx(0.5)
    assert ndcg_at_k(RECOMMENDED, TARGETS, 2)[0] == pytest.approx(
        discount(1) / (discount(1) + discount(2))
    )
    assert mrr_at_k(RECOMMENDED, TARGETS, 1)[4] == 0.0


def test_k_larger_than_list_uses_all_columns_but_k_for_the_ideal():
    # 4 targets, a 2-item list, both relevant; at k = 4 the ideal still has 4 hits.
    recommended = np.array([[0, 1]])
    targets = make_targets([[0, 1, 2, 3]], n_items=5)
    assert recall_at_k(recommended, targets, 4)[0] == pytest.approx(0.5)
    ideal = sum(discount(p) for p in range(1, 5))
    assert ndcg_at_k(recommended, targets, 4)[0] == pytest.approx(
        (discount(1) + discount(2)) / ideal
    )
    assert map_at_k(recommended, targets, 4)[0] == pytest.approx((1 + 1) / 4)
    assert hit_rate_at_k(recommended, targets, 100)[0] == 1.0


def test_recall_denominator_targets_divides_by_all_targets():
    recommended = np.array([[0, 1]])
    targets = make_targets([[0, 1, 2, 3, 4]], n_items=6)
    assert recall_at_k(recommended, targets, 2, denominator="min_k_targets")[0] == 1.0
    assert recall_at_k(recommended, targets, 2, denominator="targets")[0] == pytest.approx(0.4)


def test_unknown_recall_denominator_is_rejected():
    with pytest.raises(ValueError, match="denominator"):
        recall_at_k(RECOMMENDED, TARGETS, 3, denominator="k")


def test_repeated_item_counts_as_hit_only_at_first_position():
    recommended = np.array([[0, 0, 1]])
    targets = make_targets([[0, 1]], n_items=3)
    assert recall_at_k(recommended, targets, 2)[0] == pytest.approx(0.5)
    assert recall_at_k(recommended, targets, 3)[0] == pytest.approx(1.0)
    assert map_at_k(recommended, targets, 3)[0] == pytest.approx((1 + 2 / 3) / 2)


def test_explicitly_stored_zero_is_not_a_target():
    targets = sp.csr_matrix((np.array([1.0, 0.0]), np.array([0, 1]), np.array([0, 2])), (1, 3))
    recommended = np.array([[1, 0]])
    assert mrr_at_k(recommended, targets, 2)[0] == pytest.approx(0.5)
    assert recall_at_k(recommended, targets, 2)[0] == pytest.approx(1.0)


def test_padding_never_matches_the_previous_users_last_item():
    # user 0 holds the last catalog item; user 1's padding must not hit it.
    recommended = np.array([[2, -1], [-1, -1]])
    targets = make_targets([[2], [2]], n_items=3)
    np.testing.assert_array_equal(hit_rate_at_k(recommended, targets, 2), [1.0, 0.0])


def test_ranking_metrics_keys_cover_every_metric_and_cutoff():
    result = ranking_metrics(RECOMMENDED, TARGETS, ks=(1, 3))
    names = ("ndcg", "recall", "hit_rate", "mrr", "map")
    assert set(result) == {f"{name}@{k}" for name in names for k in (1, 3)}


def test_ranking_metrics_means_exclude_users_without_targets():
    result = ranking_metrics(RECOMMENDED, TARGETS, ks=(3,))
    # users 0, 1, 3, 4 have targets; user 2 (NaN) is dropped, user 3 (no list) counts as 0.
    assert result["recall@3"] == pytest.approx((1 + 0 + 0 + 1) / 4)
    assert result["mrr@3"] == pytest.approx((1 + 0 + 0 + 0.5) / 4)


def test_ranking_metrics_match_the_per_user_functions():
    result = ranking_metrics(RECOMMENDED, TARGETS, ks=(2, 3), denominator="targets")
    for k in (2, 3):
        assert result[f"ndcg@{k}"] == pytest.approx(np.nanmean(ndcg_at_k(RECOMMENDED, TARGETS, k)))
        assert result[f"recall@{k}"] == pytest.approx(
            np.nanmean(recall_at_k(RECOMMENDED, TARGETS, k, denominator="targets"))
        )
        assert result[f"map@{k}"] == pytest.approx(np.nanmean(map_at_k(RECOMMENDED, TARGETS, k)))


def test_ranking_metrics_are_nan_when_no_user_has_targets():
    result = ranking_metrics(np.array([[0, 1]]), sp.csr_matrix((1, 3)), ks=(2,))
    assert all(math.isnan(value) for value in result.values())


def test_mean_ignoring_nan_drops_nan_entries():
    assert mean_ignoring_nan(np.array([1.0, np.nan, 0.0])) == 0.5
    assert math.isnan(mean_ignoring_nan(np.array([np.nan])))


def test_row_count_mismatch_is_rejected():
    with pytest.raises(ValueError, match="rows"):
        recall_at_k(RECOMMENDED[:2], TARGETS, 3)


def test_one_dimensional_recommended_is_rejected():
    with pytest.raises(ValueError, match="2-D"):
        ndcg_at_k(np.array([0, 1]), make_targets([[0]], 3), 2)


def test_k_below_one_is_rejected():
    with pytest.raises(ValueError, match="k must be >= 1"):
        hit_rate_at_k(RECOMMENDED, TARGETS, 0)
    with pytest.raises(ValueError, match="k must be >= 1"):
        ranking_metrics(RECOMMENDED, TARGETS, ks=(0, 3))


def test_item_id_beyond_catalog_is_rejected():
    with pytest.raises(ValueError, match="n_items"):
        mrr_at_k(np.array([[6]]), make_targets([[0]], 6), 1)


def test_negative_id_other_than_padding_is_rejected():
    with pytest.raises(ValueError, match="-1"):
        map_at_k(np.array([[-2]]), make_targets([[0]], 6), 1)


def test_dense_targets_are_rejected():
    with pytest.raises(ValueError, match="sparse"):
        recall_at_k(RECOMMENDED, TARGETS.toarray(), 3)


@pytest.mark.integration
def test_metrics_agree_with_ranx_on_a_random_fixture():
    """Independent check against ranx.

    ranx's recall@k is hits / |T|, so it matches denominator="targets". Its ndcg@k is binary
    (relevance 1) with the ideal over min(k, |T|), as here. Its map@k divides by |T| rather
    than min(k, |T|), so ours is rescaled by min(k, |T|) / |T| before comparing. ranx cuts
    at min(k, list length) exactly as we do and cannot hold empty lists, so every user here
    has at least one item. ranx orders queries by id, hence the zero-padded user ids.
    """
    ranx = pytest.importorskip("ranx")
    rng = np.random.default_rng(7)
    n_users, n_items, length, k = 25, 40, 15, 10
    recommended = np.full((n_users, length), -1, dtype=np.int64)
    target_rows = []
    for user in range(n_users):
        size = rng.integers(1, length + 1)
        recommended[user, :size] = rng.choice(n_items, size=size, replace=False)
        target_rows.append(list(rng.choice(n_items, size=rng.integers(1, 14), replace=False)))
    targets = make_targets(target_rows, n_items)
    qrels = ranx.Qrels(
        {f"u{u:03d}": {f"i{i}": 1 for i in items} for u, items in enumerate(target_rows)}
    )
    run = ranx.Run(
        {
            f"u{u:03d}": {f"i{i}": float(length - p) for p, i in enumerate(row) if i >= 0}
            for u, row in enumerate(recommended)
        }
    )
    names = [f"{name}@{k}" for name in ("recall", "ndcg", "mrr", "hit_rate", "map")]
    theirs = ranx.evaluate(qrels, run, names, return_mean=False)
    n_targets = np.array([len(items) for items in target_rows])
    ours = {
        f"recall@{k}": recall_at_k(recommended, targets, k, denominator="targets"),
        f"ndcg@{k}": ndcg_at_k(recommended, targets, k),
        f"mrr@{k}": mrr_at_k(recommended, targets, k),
        f"hit_rate@{k}": hit_rate_at_k(recommended, targets, k),
        f"map@{k}": map_at_k(recommended, targets, k) * np.minimum(k, n_targets) / n_targets,
    }
    for name in names:
        np.testing.assert_allclose(ours[name], theirs[name], err_msg=name)
