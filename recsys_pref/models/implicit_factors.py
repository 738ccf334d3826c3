"""What the models wrapping implicit's factorizations share: threads, factors and scoring.

A subclass builds its implicit model in `_implicit_model` and folds new users in with
`fold_in`; known users are scored with their trained factors, both as user . item factors.
"""
from __future__ import annotations

import contextlib
import warnings
from abc import abstractmethod
from typing import Any, Iterator

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from recsys_pref.models.base import Recommender, stored_array


@contextlib.contextmanager
def implicit_threads() -> Iterator[None]:
    """Run implicit's native code with a single-threaded BLAS (its own threads do the work;
    a threaded OpenBLAS under them is much slower, which implicit warns about)."""
    with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(OpenBLAS|MKL|BLAS).*thread", category=RuntimeWarning)
        yield


class ImplicitFactorModel(Recommender):
    """Base of ALS and BPR: scores are user factors . item factors."""

    model: Any = None  # the fitted implicit model

    @abstractmethod
    def _implicit_model(self) -> Any:
        """A new, unfitted implicit model configured from `self.config`."""

    @abstractmethod
    def fold_in(self, user_items: sp.csr_matrix) -> np.ndarray:
        """Factors of new users from their histories, item factors frozen."""

    @property
    def user_factors(self) -> np.ndarray:
        assert self.model is not None
        return self.model.user_factors

    @property
    def item_factors(self) -> np.ndarray:
        assert self.model is not None
        return self.model.item_factors

    def _fit(self, user_items: sp.csr_matrix) -> None:
        with implicit_threads():
            model = self._implicit_model()
            model.fit(user_items, show_progress=False)
        self.model = model

    def _score(self, user_items: sp.csr_matrix, userids: np.ndarray | None) -> np.ndarray:
        users = self.user_factors[userids] if userids is not None else self.fold_in(user_items)
        return np.asarray(users @ self.item_factors.T, dtype=np.float32)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors, "item_factors": self.item_factors}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        """A fresh implicit model from the config, given the stored factors (no pickle)."""
        item_factors = stored_array(arrays, "item_factors", (self.n_items, None))
        user_factors = stored_array(arrays, "user_factors", (self.n_users, item_factors.shape[1]))
        model = self._implicit_model()
        model.user_factors, model.item_factors = user_factors, item_factors
        self.model = model
