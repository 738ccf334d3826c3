"""Item-based k-nearest-neighbours baseline (cosine similarity, implicit's CosineRecommender)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import warnings

import numpy as np
import scipy.sparse as sp
from implicit.nearest_neighbours import CosineRecommender
from implicit.utils import ParameterWarning

from recsys_pref.models.artifact import csr_arrays, csr_from_arrays
from recsys_pref.models.base import Recommender


@dataclass(frozen=True)
class ItemKNNConfig:
    """K: neighbours kept per item (rows of the item x item cosine similarity keep their K
        largest entries, the item itself included).
    num_threads: threads for the similarity computation (0 = all cores); not a modelling choice.
    """

    K: int = 100
    num_threads: int = 0

    def __post_init__(self) -> None:
        if self.K < 1:
            raise ValueError(f"K must be >= 1, got {self.K}")
        if self.num_threads < 0:
            raise ValueError(f"num_threads must be >= 0, got {self.num_threads}")


#: Tuning grid (at most 8 configurations).
GRID: list[dict[str, Any]] = [{"K": k} for k in (50, 100, 200, 400)]


class ItemKNN(Recommender):
    """score(h) = h @ S, S the (n_items, n_items) sparse top-K cosine similarity (row i holds
    item i's neighbours), exactly implicit's item-item scoring.

    The score depends on the history alone, so known and new users are scored the same way
    (userids are ignored) and fold-in needs nothing special.
    """

    name: ClassVar[str] = "itemknn"
    config_class: ClassVar[type] = ItemKNNConfig
    grid: ClassVar[list[dict[str, Any]]] = GRID

    similarity: sp.csr_matrix | None = None

    def _fit(self, user_items: sp.csr_matrix) -> None:
        model = CosineRecommender(K=self.config.K, num_threads=self.config.num_threads)
        with warnings.catch_warnings():
            # implicit normalises into a non-CSR matrix itself, then warns about converting it
            warnings.simplefilter("ignore", ParameterWarning)
            model.fit(user_items, show_progress=False)
        similarity = sp.csr_matrix(model.similarity, dtype=np.float32)
        if similarity.shape != (self.n_items, self.n_items):
            raise RuntimeError(f"unexpected similarity shape {similarity.shape} for {self.n_items} items")
        self.similarity = similarity

    def _score(self, user_items: sp.csr_matrix, userids: np.ndarray | None) -> np.ndarray:
        assert self.similarity is not None
        scores = (user_items @ self.similarity).toarray()
        return np.asarray(scores, dtype=np.float32)

    def _arrays(self) -> dict[str, np.ndarray]:
        assert self.similarity is not None
        return csr_arrays("similarity", self.similarity)

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.similarity = csr_from_arrays(arrays, "similarity", (self.n_items, self.n_items))
