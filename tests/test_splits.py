"""Specification of the evaluation splits in recsys_pref.data.splits.

Strong generalization (held-out users), global temporal cut and the dataset's fixed split,
on tiny hand-built or synthetic datasets.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from recsys_pref.data import InteractionDataset, SplitConfig, from_frame, make_split, make_synthetic
from recsys_pref.data.splits import HeldOut, Split

# --- fixtures and helpers ----------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic() -> InteractionDataset:
    """200 users x 60 items, every user with >= 5 positives, timestamps increasing per user."""
    return make_synthetic(n_users=200, n_items=60, n_personas=3, density=0.2, seed=7)


def frame_dataset(histories: dict[int, list[int]], **kwargs) -> InteractionDataset:
    """A dataset from {user: [items]}; every row a positive, timestamps in listing order."""
    users, items, times = [], [], []
    clock = 0
    for user, liked in histories.items():
        for item in liked:
            users.append(user)
            items.append(item)
            times.append(clock)
            clock += 1
    frame = pl.DataFrame({"user_id": users, "item_id": items, "timestamp": times})
    return from_frame(frame, "toy", **kwargs)


def rows_of(matrix: sp.csr_matrix) -> list[set[int]]:
    matrix = sp.csr_matrix(matrix)
    return [set(matrix.indices[matrix.indptr[r] : matrix.indptr[r + 1]].tolist()) for r in range(matrix.shape[0])]


def user_rows(matrix: sp.csr_matrix) -> np.ndarray:
    """Users (row indices) with at least one entry."""
    return np.flatnonzero(np.diff(sp.csr_matrix(matrix).indptr) > 0)


def assert_same_held_out(a: HeldOut, b: HeldOut) -> None:
    np.testing.assert_array_equal(a.users, b.users)
    assert (a.fold_in != b.fold_in).nnz == 0
    assert (a.targets != b.targets).nnz == 0
    assert a.known == b.known


def assert_same_split(a: Split, b: Split) -> None:
    assert (a.train != b.train).nnz == 0
    assert (a.val_train != b.val_train).nnz == 0
    np.testing.assert_array_equal(a.catalog, b.catalog)
    assert_same_held_out(a.val, b.val)
    assert_same_held_out(a.test, b.test)


# --- strong generalization ---------------------------------------------------------------


def test_strong_split_user_groups_are_disjoint(synthetic: InteractionDataset) -> None:
    split = make_split(synthetic, SplitConfig(seed=0))
    train_users = set(user_rows(split.train).tolist())
    val_users, test_users = set(split.val.users.tolist()), set(split.test.users.tolist())
    assert not train_users & val_users
    assert not train_users & test_users
    assert not val_users & test_users


def test_strong_split_covers_every_eligible_user_in_70_10_20_shares(synthetic: InteractionDataset) -> None:
    split = make_split(synthetic, SplitConfig(seed=0))
    n = synthetic.n_users  # every synthetic user has >= 5 positives, so all are eligible
    train_users = user_rows(split.train)
    all_users = np.concatenate([train_users, split.val.users, split.test.users])
    assert sorted(all_users.tolist()) == list(range(n))
    assert len(split.test) == round(0.2 * n)
    assert len(split.val) == round(0.1 * n)
    assert len(train_users) == n - round(0.2 * n) - round(0.1 * n)


def test_strong_split_held_out_rows_are_empty_in_training_matrix(synthetic: InteractionDataset) -> None:
    split = make_split(synthetic, SplitConfig(seed=0))
    assert split.train.shape == (synthetic.n_users, synthetic.n_items)
    held = np.concatenate([split.val.users, split.test.users])
    assert split.train[held].nnz == 0
    assert (split.val_train != split.train).nnz == 0


def test_strong_split_held_out_users_are_unknown_and_recall_is_min_k_targets(synthetic: InteractionDataset) -> None:
    split = make_split(synthetic, SplitConfig(seed=0))
    assert split.protocol == "strong"
    assert split.val.known is False and split.test.known is False
    assert split.recall_denominator == "min_k_targets"


def test_strong_split_fold_in_and_targets_are_disjoint_and_non_empty(synthetic: InteractionDataset) -> None:
    split = make_split(synthetic, SplitConfig(seed=0))
    for held in (split.val, split.test):
        assert held.fold_in.shape == held.targets.shape == (len(held), synthetic.n_items)
        for history, targets in zip(rows_of(held.fold_in), rows_of(held.targets)):
            assert history and targets
            assert not history & targets


def test_strong_split_fold_in_and_targets_partition_the_users_catalog_positives(synthetic: InteractionDataset) -> None:
    split = make_split(synthetic, SplitConfig(seed=0))
    positives = synthetic.to_csr()
    for held in (split.val, split.test):
        for user, history, targets in zip(held.users, rows_of(held.fold_in), rows_of(held.targets)):
            in_catalog = {item for item in rows_of(positives[user])[0] if split.catalog[item]}
            assert history | targets == in_catalog


def test_strong_split_gives_about_80_percent_of_each_history_as_fold_in(synthetic: InteractionDataset) -> None:
    split = make_split(synthetic, SplitConfig(seed=0))
    held = split.test
    n_history = np.diff(held.fold_in.indptr)
    n_targets = np.diff(held.targets.indptr)
    n = n_history + n_targets
    expected = np.clip(np.round(0.8 * n), 1, n - 1)
    assert np.all(np.abs(n_history - expected) <= 0.5)  # rounding of .5 either way
    assert abs(n_history.sum() / n.sum() - 0.8) < 0.03


def test_strong_split_fold_in_share_is_configurable(synthetic: InteractionDataset) -> None:
    split = make_split(synthetic, SplitConfig(fold_in_share=0.5, seed=0))
    n_history = np.diff(split.test.fold_in.indptr).sum()
    n_targets = np.diff(split.test.targets.indptr).sum()
    assert abs(n_history / (n_history + n_targets) - 0.5) < 0.05


def test_strong_split_drops_users_below_min_positives() -> None:
    histories = {user: list(range(user % 3, user % 3 + 6)) for user in range(30)}  # 6 positives each
    histories |= {100 + user: [0, 1, 2, 3] for user in range(10)}  # 4 positives: ineligible
    dataset = frame_dataset(histories)
    split = make_split(dataset, SplitConfig(min_positives=5, seed=0))
    short = set(dataset.user_ids.to_index([100 + user for user in range(10)]).tolist())
    seen = set(user_rows(split.train).tolist()) | set(split.val.users.tolist()) | set(split.test.users.tolist())
    assert not seen & short
    assert len(seen) == 30


def test_strong_split_keeps_users_with_exactly_min_positives() -> None:
    histories = {user: [user % 4, 4 + user % 3, 7, 8] for user in range(20)}  # exactly 4 positives
    dataset = frame_dataset(histories)
    split = make_split(dataset, SplitConfig(min_positives=4, seed=0))
    assert len(user_rows(split.train)) + len(split.val) + len(split.test) == 20


def test_strong_split_catalog_is_the_items_of_training_positives() -> None:
    histories = {user: [0, 1, 2, 3, 4, 100 + user] for user in range(40)}  # one private item per user
    dataset = frame_dataset(histories)
    split = make_split(dataset, SplitConfig(seed=0))
    trained = np.asarray(split.train.sum(axis=0)).ravel() > 0
    np.testing.assert_array_equal(split.catalog, trained)
    assert (~split.catalog).sum() >= len(split.val) + len(split.test)  # held-out private items are outside


def test_strong_split_never_puts_items_outside_the_catalog_in_held_out_rows() -> None:
    histories = {user: [0, 1, 2, 3, 4, 100 + user] for user in range(40)}
    dataset = frame_dataset(histories)
    split = make_split(dataset, SplitConfig(seed=0))
    outside = np.flatnonzero(~split.catalog)
    assert outside.size > 0
    for held in (split.val, split.test):
        assert held.fold_in[:, outside].nnz == 0
        assert held.targets[:, outside].nnz == 0


def test_strong_split_is_deterministic_per_seed(synthetic: InteractionDataset) -> None:
    assert_same_split(make_split(synthetic, SplitConfig(seed=3)), make_split(synthetic, SplitConfig(seed=3)))


def test_strong_split_differs_across_seeds(synthetic: InteractionDataset) -> None:
    first, second = make_split(synthetic, SplitConfig(seed=0)), make_split(synthetic, SplitConfig(seed=1))
    assert set(first.test.users.tolist()) != set(second.test.users.tolist())


def test_split_records_its_seed(synthetic: InteractionDataset) -> None:
    assert make_split(synthetic, SplitConfig(seed=5)).seed == 5


# --- temporal ---------------------------------------------------------------------------


def timestamp_lookup(dataset: InteractionDataset) -> dict[tuple[int, int], int]:
    frame = dataset.positives()
    users = dataset.user_ids.to_index(frame["user_id"].to_numpy())
    items = dataset.item_ids.to_index(frame["item_id"].to_numpy())
    return dict(zip(zip(users.tolist(), items.tolist()), frame["timestamp"].to_list()))


def entry_times(matrix: sp.csr_matrix, users: np.ndarray, times: dict[tuple[int, int], int]) -> list[int]:
    coo = sp.coo_matrix(matrix)
    return [times[(int(users[row]), int(col))] for row, col in zip(coo.row, coo.col)]


def test_temporal_test_targets_are_later_than_every_training_interaction(synthetic: InteractionDataset) -> None:
    split = make_split(synthetic, SplitConfig(protocol="temporal"))
    times = timestamp_lookup(synthetic)
    train_times = entry_times(split.train, np.arange(synthetic.n_users), times)
    target_times = entry_times(split.test.targets, split.test.users, times)
    assert target_times and train_times
    assert min(target_times) > max(train_times)


def test_temporal_val_targets_are_later_than_val_training_and_before_test_targets(synthetic: InteractionDataset) -> None:
    split = make_split(synthetic, SplitConfig(protocol="temporal"))
    times = timestamp_lookup(synthetic)
    val_train_times = entry_times(split.val_train, np.arange(synthetic.n_users), times)
    val_times = entry_times(split.val.targets, split.val.users, times)
    test_times = entry_times(split.test.targets, split.test.users, times)
    assert val_times
    assert min(val_times) > max(val_train_times)
    assert max(val_times) < min(test_times)


def test_temporal_held_out_users_are_known_with_their_training_rows_as_fold_in(synthetic: InteractionDataset) -> None:
    split = make_split(synthetic, SplitConfig(protocol="temporal"))
    assert split.protocol == "temporal"
    assert split.test.known is True and split.val.known is True
    assert (split.test.fold_in != split.train[split.test.users]).nnz == 0
    assert (split.val.fold_in != split.val_train[split.val.users]).nnz == 0


def test_temporal_targets_are_in_the_catalog_and_not_in_fold_in(synthetic: InteractionDataset) -> None:
    split = make_split(synthetic, SplitConfig(protocol="temporal"))
    assert split.test.targets[:, ~split.catalog].nnz == 0
    assert split.test.targets.multiply(split.test.fold_in).nnz == 0
    assert np.all(np.diff(split.test.fold_in.indptr) > 0)
    assert np.all(np.diff(split.test.targets.indptr) > 0)


def test_temporal_split_without_timestamps_raises() -> None:
    frame = pl.DataFrame({"user_id": [1, 1, 2, 2], "item_id": [1, 2, 1, 2]})
    with pytest.raises(ValueError, match="timestamp"):
        make_split(from_frame(frame), SplitConfig(protocol="temporal"))


# --- fixed ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fixed_dataset() -> InteractionDataset:
    """40 users with 6 training items each and 2 published test items each, over 20 items."""
    rng = np.random.default_rng(0)
    train_rows, test_rows = [], []
    for user in range(40):
        items = rng.choice(20, size=8, replace=False)
        train_rows += [(user, int(item)) for item in items[:6]]
        test_rows += [(user, int(item)) for item in items[6:]]
    schema = {"user_id": pl.Int64, "item_id": pl.Int64}
    train = pl.DataFrame(train_rows, schema=schema, orient="row")
    test = pl.DataFrame(test_rows, schema=schema, orient="row").with_columns(
        pl.lit(1.0).alias("rating"), pl.lit(None, dtype=pl.Int64).alias("timestamp")
    )
    return dataclasses.replace(from_frame(train, "fixed-toy"), fixed_test=test)


def test_fixed_split_uses_the_published_test_interactions_as_test_targets(fixed_dataset: InteractionDataset) -> None:
    split = make_split(fixed_dataset, SplitConfig(protocol="fixed"))
    published = fixed_dataset.to_csr(fixed_dataset.fixed_test)
    assert split.protocol == "fixed"
    np.testing.assert_array_equal(split.test.users, np.arange(fixed_dataset.n_users))
    assert (split.test.targets != published).nnz == 0


def test_fixed_split_trains_on_all_training_interactions_with_them_as_fold_in(fixed_dataset: InteractionDataset) -> None:
    split = make_split(fixed_dataset, SplitConfig(protocol="fixed"))
    assert (split.train != fixed_dataset.to_csr()).nnz == 0
    assert (split.test.fold_in != split.train[split.test.users]).nnz == 0
    assert split.test.known is True and split.val.known is True
    assert split.catalog.all()


def test_fixed_split_recall_denominator_is_targets(fixed_dataset: InteractionDataset) -> None:
    assert make_split(fixed_dataset, SplitConfig(protocol="fixed")).recall_denominator == "targets"


def test_fixed_split_val_train_rows_of_val_users_are_their_fold_in_without_val_targets(
    fixed_dataset: InteractionDataset,
) -> None:
    split = make_split(fixed_dataset, SplitConfig(protocol="fixed", val_share=0.25))
    assert len(split.val) == 10
    val_rows = split.val_train[split.val.users]
    assert (val_rows != split.val.fold_in).nnz == 0
    assert val_rows.multiply(split.val.targets).nnz == 0
    # fold-in plus val targets are the users' whole training rows
    assert ((split.val.fold_in + split.val.targets) != split.train[split.val.users]).nnz == 0


def test_fixed_split_val_train_rows_of_other_users_equal_train(fixed_dataset: InteractionDataset) -> None:
    split = make_split(fixed_dataset, SplitConfig(protocol="fixed", val_share=0.25))
    others = np.setdiff1d(np.arange(fixed_dataset.n_users), split.val.users)
    assert (split.val_train[others] != split.train[others]).nnz == 0


def test_fixed_split_val_targets_are_disjoint_from_fold_in_and_non_empty(fixed_dataset: InteractionDataset) -> None:
    split = make_split(fixed_dataset, SplitConfig(protocol="fixed", val_share=0.25))
    for history, targets in zip(rows_of(split.val.fold_in), rows_of(split.val.targets)):
        assert history and targets
        assert not history & targets


def test_fixed_split_is_deterministic_per_seed(fixed_dataset: InteractionDataset) -> None:
    config = SplitConfig(protocol="fixed", seed=4)
    assert_same_split(make_split(fixed_dataset, config), make_split(fixed_dataset, config))


def test_fixed_protocol_without_a_published_split_raises(synthetic: InteractionDataset) -> None:
    with pytest.raises(ValueError, match="no published split"):
        make_split(synthetic, SplitConfig(protocol="fixed"))


# --- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"val_share": 0.0},
        {"val_share": 1.0},
        {"test_share": 0.0},
        {"test_share": -0.1},
        {"val_share": 0.5, "test_share": 0.5},
        {"fold_in_share": 0.0},
        {"fold_in_share": 1.0},
        {"min_positives": 1},
    ],
    ids=lambda kwargs: ",".join(f"{k}={v}" for k, v in kwargs.items()),
)
def test_bad_split_config_values_raise_value_error(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        SplitConfig(**kwargs)


def test_unknown_protocol_raises_value_error(synthetic: InteractionDataset) -> None:
    with pytest.raises(ValueError, match="unknown protocol"):
        make_split(synthetic, SplitConfig(protocol="random"))  # type: ignore[arg-type]


def test_dataset_without_positives_raises() -> None:
    frame = pl.DataFrame({"user_id": [1, 1, 2, 2], "item_id": [1, 2, 1, 2], "rating": [1.0, 2.0, 3.0, 2.0]})
    dataset = from_frame(frame, "all-negative", positive_threshold=4.0)
    with pytest.raises(ValueError, match="positives"):
        make_split(dataset, SplitConfig())


def test_dataset_where_no_user_reaches_min_positives_raises() -> None:
    dataset = frame_dataset({user: [0, 1, 2] for user in range(10)})
    with pytest.raises(ValueError, match="5 or more positives"):
        make_split(dataset, SplitConfig(min_positives=5))
