"""Evaluation protocols: strong generalization (default), global temporal, and fixed splits.

A `Split` holds a training matrix whose rows are all of the dataset's users (rows of
held-out users are empty under strong generalization) and two `HeldOut` groups, `val` for
tuning and `test` for reporting. Items never seen among the training positives are outside
the catalog: they are dropped from held-out histories and targets and never ranked (the
protocol of Liang et al. 2018, which the EASE and Mult-VAE papers use).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys_pref.data.dataset import InteractionDataset

RecallDenominator = Literal["min_k_targets", "targets"]


@dataclass(frozen=True)
class HeldOut:
    """Users whose targets are hidden from the model.

    users: (n,) dataset user indices.
    fold_in: (n, n_items) CSR, the history the model may see (excluded from rankings).
    targets: (n, n_items) CSR, the hidden positives to retrieve.
    known: True when these users' rows of the training matrix are their fold-in histories
        (temporal and fixed splits): models may use state learned for them in training.
    """

    users: np.ndarray
    fold_in: sp.csr_matrix
    targets: sp.csr_matrix
    known: bool

    def __len__(self) -> int:
        return len(self.users)


@dataclass(frozen=True)
class SplitConfig:
    """Protocol settings.

    protocol: "strong" (held-out users), "temporal" (global time cut) or "fixed" (the
        dataset's own train/test files).
    val_share, test_share: shares of users held out (strong) or of time (temporal).
    fold_in_share: share of each held-out user's positives given as history (strong).
    min_positives: users with fewer positives are dropped before splitting.
    seed: the only source of randomness; the same seed gives the same split.
    """

    protocol: Literal["strong", "temporal", "fixed"] = "strong"
    val_share: float = 0.1
    test_share: float = 0.2
    fold_in_share: float = 0.8
    min_positives: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.val_share < 1 or not 0 < self.test_share < 1 or self.val_share + self.test_share >= 1:
            raise ValueError("val_share and test_share must be in (0, 1) and sum below 1")
        if not 0 < self.fold_in_share < 1:
            raise ValueError("fold_in_share must be in (0, 1)")
        if self.min_positives < 2:
            raise ValueError("min_positives must be >= 2 so every held-out user has history and a target")


@dataclass(frozen=True)
class Split:
    """train: (n_users, n_items) positives for the final fit; val_train: the matrix to fit on
    while tuning against `val` (equal to train unless val users are known users)."""

    protocol: str
    train: sp.csr_matrix
    val_train: sp.csr_matrix
    val: HeldOut
    test: HeldOut
    catalog: np.ndarray  # (n_items,) bool: items ranked at all
    recall_denominator: RecallDenominator
    seed: int


def make_split(dataset: InteractionDataset, config: SplitConfig = SplitConfig()) -> Split:
    """The split of `dataset` under `config.protocol` (deterministic per seed)."""
    if config.protocol == "strong":
        return _strong_generalization(dataset, config)
    if config.protocol == "temporal":
        return _temporal(dataset, config)
    if config.protocol == "fixed":
        return _fixed(dataset, config)
    raise ValueError(f"unknown protocol {config.protocol!r}; expected strong, temporal or fixed")


def _eligible_positives(dataset: InteractionDataset, min_positives: int) -> sp.csr_matrix:
    positives = dataset.to_csr()
    counts = np.diff(positives.indptr)
    keep = sp.diags((counts >= min_positives).astype(np.float32))
    matrix = (keep @ positives).tocsr()
    matrix.eliminate_zeros()
    if matrix.nnz == 0:
        raise ValueError(f"{dataset.name}: no user has {min_positives} or more positives")
    return matrix


def _row_subset(matrix: sp.csr_matrix, rows: np.ndarray) -> sp.csr_matrix:
    """(n_users, n_items) matrix keeping only `rows` (others emptied)."""
    mask = np.zeros(matrix.shape[0], np.float32)
    mask[rows] = 1
    out = (sp.diags(mask) @ matrix).tocsr()
    out.eliminate_zeros()
    return out


def _split_rows(rows: sp.csr_matrix, share: float, rng: np.random.Generator) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Per row, a random `share` of the entries (at least one, and at most n-1 when n > 1) go
    to the first part, the rest to the second."""
    rows = sp.csr_matrix(rows)
    in_first = np.zeros(rows.nnz, bool)
    for row in range(rows.shape[0]):
        start, stop = rows.indptr[row], rows.indptr[row + 1]
        n = stop - start
        if n == 0:
            continue
        n_first = int(np.clip(round(share * n), 1, max(1, n - 1)))
        in_first[start + rng.permutation(n)[:n_first]] = True

    def part(mask: np.ndarray) -> sp.csr_matrix:
        out = sp.csr_matrix((rows.data * mask, rows.indices.copy(), rows.indptr.copy()), shape=rows.shape)
        out.eliminate_zeros()
        return out

    return part(in_first), part(~in_first)


def _held_out(users: np.ndarray, history: sp.csr_matrix, targets: sp.csr_matrix, known: bool) -> HeldOut:
    """Keep only users that still have both history and targets."""
    keep = (np.diff(history.indptr) > 0) & (np.diff(targets.indptr) > 0)
    return HeldOut(users[keep], history[keep], targets[keep], known)


def _strong_generalization(dataset: InteractionDataset, config: SplitConfig) -> Split:
    positives = _eligible_positives(dataset, config.min_positives)
    rng = np.random.default_rng(config.seed)
    eligible = np.flatnonzero(np.diff(positives.indptr) > 0)
    order = rng.permutation(eligible)
    n_test = int(round(config.test_share * len(order)))
    n_val = int(round(config.val_share * len(order)))
    test_users, val_users, train_users = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    train = _row_subset(positives, train_users)
    catalog = np.asarray(train.sum(axis=0)).ravel() > 0
    outside = sp.diags((~catalog).astype(np.float32))

    def held_out(users: np.ndarray) -> HeldOut:
        users = np.sort(users)
        rows = positives[users]
        rows = (rows - rows @ outside).tocsr()
        rows.eliminate_zeros()
        fold_in, targets = _split_rows(rows, config.fold_in_share, rng)
        return _held_out(users, fold_in, targets, known=False)

    val, test = held_out(val_users), held_out(test_users)
    return Split("strong", train, train, val, test, catalog, "min_k_targets", config.seed)


def _temporal(dataset: InteractionDataset, config: SplitConfig) -> Split:
    """Global time cut: the last test_share of positives (by time) are test targets, the
    val_share before them validation targets; users keep their earlier rows as known history."""
    frame = dataset.positives()
    if frame["timestamp"].null_count() == frame.height:
        raise ValueError(f"{dataset.name} has no timestamps: the temporal protocol needs them")
    frame = frame.drop_nulls("timestamp")
    test_cut = frame["timestamp"].quantile(1 - config.test_share)
    val_cut = frame["timestamp"].quantile(1 - config.test_share - config.val_share)
    before_test = frame.filter(pl.col("timestamp") < test_cut)
    before_val = frame.filter(pl.col("timestamp") < val_cut)
    train = dataset.to_csr(before_test)
    val_train = dataset.to_csr(before_val)
    catalog = np.asarray(train.sum(axis=0)).ravel() > 0
    val_catalog = np.asarray(val_train.sum(axis=0)).ravel() > 0

    def held_out(history: sp.csr_matrix, target_frame: pl.DataFrame, known_items: np.ndarray) -> HeldOut:
        targets = dataset.to_csr(target_frame)
        targets = (targets @ sp.diags(known_items.astype(np.float32))).tocsr()
        targets = (targets - targets.multiply(history)).tocsr()
        targets.eliminate_zeros()
        users = np.arange(dataset.n_users)
        return _held_out(users, history, targets, known=True)

    val = held_out(val_train, frame.filter((pl.col("timestamp") >= val_cut) & (pl.col("timestamp") < test_cut)), val_catalog)
    test = held_out(train, frame.filter(pl.col("timestamp") >= test_cut), catalog)
    return Split("temporal", train, val_train, val, test, catalog, "min_k_targets", config.seed)


def _fixed(dataset: InteractionDataset, config: SplitConfig) -> Split:
    """The dataset's own train/test files; recall = hits / |T| as in the papers that use them.
    Tuning holds out a seeded fold_in-share split of val_share of the users' training rows."""
    if dataset.fixed_test is None:
        raise ValueError(f"{dataset.name} has no published split; use protocol 'strong' or 'temporal'")
    train = dataset.to_csr()
    users = np.arange(dataset.n_users)
    test_targets = dataset.to_csr(dataset.positives(dataset.fixed_test))
    catalog = np.ones(dataset.n_items, bool)
    test = _held_out(users, train, test_targets, known=True)
    rng = np.random.default_rng(config.seed)
    eligible = np.flatnonzero(np.diff(train.indptr) >= 2)
    val_users = np.sort(rng.choice(eligible, size=max(1, int(round(config.val_share * len(eligible)))), replace=False))
    kept, held = _split_rows(train[val_users], config.fold_in_share, rng)
    others = np.setdiff1d(np.arange(dataset.n_users), val_users)
    placement = sp.csr_matrix(
        (np.ones(len(val_users), np.float32), (val_users, np.arange(len(val_users)))),
        shape=(dataset.n_users, len(val_users)),
    )
    val_train = (_row_subset(train, others) + placement @ kept).tocsr()
    val = _held_out(val_users, kept, held, known=True)
    return Split("fixed", train, val_train, val, test, catalog, "targets", config.seed)
