"""Most-popular baseline: every user gets the items ranked by training popularity."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from recsys_pref.models.base import Recommender, stored_array


@dataclass(frozen=True)
class PopularityConfig:
    """Popularity has no hyperparameters (an empty config keeps the interface uniform)."""


#: Tuning grid (at most 8 configurations, the budget every model gets): nothing to tune.
GRID: list[dict[str, Any]] = [{}]


class Popularity(Recommender):
    """Score of item i = number of training users with a positive on i, the same for every user.

    New and known users are scored identically (the history only matters through the
    already-liked filter in `recommend`).
    """

    name: ClassVar[str] = "popularity"
    config_class: ClassVar[type] = PopularityConfig
    grid: ClassVar[list[dict[str, Any]]] = GRID

    item_counts: np.ndarray | None = None

    def _fit(self, user_items: sp.csr_matrix) -> None:
        # users per item (a count of nonzeros, whatever the weights)
        self.item_counts = np.diff(user_items.tocsc().indptr).astype(np.float32)

    def _score(self, user_items: sp.csr_matrix, userids: np.ndarray | None) -> np.ndarray:
        assert self.item_counts is not None
        return np.tile(self.item_counts, (user_items.shape[0], 1))

    def _arrays(self) -> dict[str, np.ndarray]:
        assert self.item_counts is not None
        return {"item_counts": self.item_counts}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.item_counts = stored_array(arrays, "item_counts", (self.n_items,))
