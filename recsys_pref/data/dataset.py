"""The dataset object: interactions with external ids, their dense index maps, item metadata.

Everything downstream (splits, models, evaluation) works on dense integer indices; every
output goes back to external ids through `IdMap`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

INTERACTION_COLUMNS = ("user_id", "item_id", "rating", "timestamp")


class UnknownIdError(KeyError):
    """Raised when an external id is not in a dataset's or model's id map."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "unknown id"


@dataclass(frozen=True)
class IdMap:
    """A bijection between external ids (any hashable scalars) and dense indices 0..n-1."""

    external: np.ndarray  # (n,) external ids, in index order
    kind: str = "id"  # "user" or "item": used in error messages
    _lookup: dict[Any, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        lookup = {value: index for index, value in enumerate(self.external.tolist())}
        if len(lookup) != len(self.external):
            raise ValueError(f"{self.kind} ids are not unique")
        object.__setattr__(self, "_lookup", lookup)

    def __len__(self) -> int:
        return len(self.external)

    def __contains__(self, external_id: Any) -> bool:
        return external_id in self._lookup

    def to_index(self, external_ids: Any) -> np.ndarray:
        """External ids (scalar or sequence) -> int64 indices; unknown ids raise UnknownIdError."""
        values = np.atleast_1d(np.asarray(external_ids, dtype=object)).tolist()
        missing = [value for value in values if value not in self._lookup]
        if missing:
            shown = ", ".join(repr(value) for value in missing[:5])
            more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
            raise UnknownIdError(f"unknown {self.kind} id(s): {shown}{more}")
        return np.fromiter((self._lookup[value] for value in values), dtype=np.int64, count=len(values))

    def to_external(self, indices: np.ndarray) -> np.ndarray:
        """Dense indices -> external ids (same shape)."""
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self.external)):
            raise IndexError(f"{self.kind} index out of range 0..{len(self.external) - 1}")
        return self.external[indices]

    def to_list(self) -> list:
        """The external ids in dense-index order, as Python values."""
        return self.external.tolist()


@dataclass(frozen=True)
class InteractionDataset:
    """Interactions, id maps and item metadata of one dataset.

    interactions: polars frame with columns user_id, item_id (external ids), rating (Float64,
        the raw rating or weight; 1.0 where the source has none) and timestamp (Int64 seconds,
        null where the source has none); at most one row per (user, item).
    items: polars frame, one row per item in `item_ids` order: item_id, title (Utf8),
        genres (List[Utf8]) and tags (List[Utf8]); empty lists where unknown.
    positive_threshold: ratings >= this count as positives (None: every row is a positive).
    fixed_test: for datasets that ship their own split (gowalla), the published test
        interactions in the same columns; None otherwise.
    ground_truth: for `synthetic`, the planted personas (see data.synthetic); None otherwise.
    """

    name: str
    interactions: pl.DataFrame
    items: pl.DataFrame
    user_ids: IdMap
    item_ids: IdMap
    positive_threshold: float | None = None
    fixed_test: pl.DataFrame | None = None
    ground_truth: Any = None

    @property
    def n_users(self) -> int:
        """Number of users (rows of `to_csr()`)."""
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        """Number of items (columns of `to_csr()`)."""
        return len(self.item_ids)

    def positives(self, frame: pl.DataFrame | None = None) -> pl.DataFrame:
        """Rows of `frame` (default: all interactions) that count as positives."""
        frame = self.interactions if frame is None else frame
        if self.positive_threshold is None:
            return frame
        return frame.filter(pl.col("rating") >= self.positive_threshold)

    def to_csr(self, frame: pl.DataFrame | None = None, binary: bool = True) -> sp.csr_matrix:
        """A (n_users, n_items) float32 CSR of `frame`'s rows (default: positives), in dense indices."""
        frame = self.positives() if frame is None else frame
        rows = self.user_ids.to_index(frame["user_id"].to_numpy())
        cols = self.item_ids.to_index(frame["item_id"].to_numpy())
        values = np.ones(len(rows), np.float32) if binary else frame["rating"].to_numpy().astype(np.float32)
        matrix = sp.csr_matrix((values, (rows, cols)), shape=(self.n_users, self.n_items), dtype=np.float32)
        matrix.sum_duplicates()
        return matrix

    def summary(self) -> str:
        """One line: name, sizes, density and positives."""
        n_rows = self.interactions.height
        density = n_rows / max(1, self.n_users * self.n_items)
        positives = self.positives().height
        split = ", fixed test split" if self.fixed_test is not None else ""
        return (
            f"{self.name}: {self.n_users:,} users x {self.n_items:,} items, {n_rows:,} interactions "
            f"({density:.2%} dense), {positives:,} positives{split}"
        )


class UntrainableDatasetError(ValueError):
    """A dataset too small to learn anything from (fewer than 2 users or 2 items with positives)."""


def check_trainable(dataset: InteractionDataset) -> None:
    """Refuse, before any training starts, a dataset whose positives cover fewer than 2 users or
    fewer than 2 items: a model fitted on it can rank nothing (training would run its epochs and
    return empty tables)."""
    positives = dataset.positives()
    n_users, n_items = positives["user_id"].n_unique(), positives["item_id"].n_unique()
    if n_users < 2 or n_items < 2:
        threshold = "" if dataset.positive_threshold is None else f" (rating >= {dataset.positive_threshold:g})"
        raise UntrainableDatasetError(
            f"{dataset.name}: its positives{threshold} cover {n_users} user(s) and {n_items} item(s); "
            "training needs at least 2 users and 2 items with positive interactions"
        )
