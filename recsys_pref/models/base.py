"""The one recommender interface every model implements (baselines and the persona model).

A model is fitted on a (n_users, n_items) CSR of positives and scores users in two ways:
known users by their row in the training matrix (their state learned in training), and new
users from a history alone (fold-in: every shared weight frozen). Ranking, filtering and the
implicit-style `recommend` are written once here, on top of `score`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, replace
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from recsys_pref.core.ranking import top_k


class NotFittedError(RuntimeError):
    """Raised when a model is used before `fit`."""


class ModelTooLargeError(ValueError):
    """Raised by `fit` when the data would need more memory than the model's configured limit."""


def check_user_items(user_items: Any, n_items: int | None = None, name: str = "user_items") -> sp.csr_matrix:
    """Validate a user x item interaction matrix and return it as float32 CSR.

    Raises TypeError for non-sparse input and ValueError for NaN/inf/negative values or a
    column count that does not match the model's catalog.
    """
    if not sp.issparse(user_items):
        raise TypeError(f"{name} must be a scipy.sparse matrix (users x items), got {type(user_items).__name__}")
    matrix = sp.csr_matrix(user_items, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {matrix.shape}")
    if n_items is not None and matrix.shape[1] != n_items:
        raise ValueError(f"{name} has {matrix.shape[1]} item columns but the model knows {n_items} items")
    if matrix.nnz and not np.isfinite(matrix.data).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if matrix.nnz and (matrix.data < 0).any():
        raise ValueError(f"{name} contains negative values; interactions must be non-negative weights")
    return matrix


class Recommender(ABC):
    """Base class: subclasses implement `_fit` and `_score`; `recommend` is shared.

    Attributes set by `fit`: n_users, n_items (the training matrix's shape).
    """

    name: ClassVar[str]
    config_class: ClassVar[type | None] = None  # the frozen dataclass of hyperparameters
    n_users: int | None = None
    n_items: int | None = None

    def __init__(self, config: Any = None, **params: Any) -> None:
        """`config` (default: `config_class()`), with any `params` overriding its fields."""
        if config is None and self.config_class is not None:
            config = self.config_class()
        self.config = replace(config, **params) if params else config

    # -- to implement ---------------------------------------------------------------------
    @abstractmethod
    def _fit(self, user_items: sp.csr_matrix) -> None:
        """Learn from a (n_users, n_items) float32 CSR of positives."""

    @abstractmethod
    def _score(self, user_items: sp.csr_matrix, userids: np.ndarray | None) -> np.ndarray:
        """Scores (n, n_items) float32 for n users whose histories are the rows of `user_items`.

        userids None: new users, folded in from `user_items` alone. Otherwise the training-matrix
        rows of known users (models with per-user state use it; others may ignore it).
        """

    # -- shared ---------------------------------------------------------------------------
    def hyperparameters(self) -> dict[str, Any]:
        """The configuration as a flat dict, for result rows."""
        return asdict(self.config) if self.config is not None else {}

    def fit(self, user_items: sp.spmatrix) -> "Recommender":
        matrix = check_user_items(user_items)
        if matrix.shape[0] == 0 or matrix.shape[1] == 0 or matrix.nnz == 0:
            raise ValueError(f"cannot fit {self.name} on an empty interaction matrix (shape {matrix.shape})")
        self.n_users, self.n_items = matrix.shape
        self._fit(matrix)
        return self

    def _check_fitted(self) -> None:
        if self.n_items is None:
            raise NotFittedError(f"{self.name} is not fitted: call fit() first")

    def score(self, user_items: sp.spmatrix, userids: np.ndarray | None = None) -> np.ndarray:
        """Validated scores (n, n_items) for the rows of `user_items` (see `_score`)."""
        self._check_fitted()
        matrix = check_user_items(user_items, self.n_items)
        if userids is not None:
            userids = np.asarray(userids, dtype=np.int64).reshape(-1)
            if len(userids) != matrix.shape[0]:
                raise ValueError(f"{len(userids)} userids but user_items has {matrix.shape[0]} rows")
            if userids.size and (userids.min() < 0 or userids.max() >= self.n_users):
                raise ValueError(f"userids must lie in 0..{self.n_users - 1} (users seen in fit)")
        return self._score(matrix, userids)

    def recommend(
        self,
        userid: int | np.ndarray,
        user_items: sp.spmatrix,
        N: int = 10,
        filter_already_liked_items: bool = True,
        filter_items: np.ndarray | None = None,
        recalculate_user: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-N items for one user (arrays of shape (N,)) or a batch ((n, N)), as implicit does.

        user_items holds the users' rows (one row per requested user). With
        recalculate_user=True the users are folded in from user_items instead of using their
        training state. Already-liked and filtered items are never returned: when fewer than N
        items remain, the lists are shorter (batch rows are padded with id -1 and score -inf).
        """
        single = np.ndim(userid) == 0
        userids = np.atleast_1d(np.asarray(userid, dtype=np.int64))
        matrix = check_user_items(user_items, self.n_items if self.n_items is not None else None)
        if matrix.shape[0] != len(userids):
            raise ValueError(f"user_items must have one row per user: {matrix.shape[0]} rows for {len(userids)} users")
        if N < 1:
            raise ValueError(f"N must be >= 1, got {N}")
        scores = self.score(matrix, None if recalculate_user else userids)
        exclude = matrix if filter_already_liked_items else None
        ids, values = top_k(scores, N, exclude=exclude, banned_items=filter_items)
        if single:
            keep = ids[0] >= 0
            return ids[0][keep], values[0][keep]
        return ids, values
