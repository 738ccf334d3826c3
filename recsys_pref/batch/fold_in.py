"""The fold-in job: every user of an interaction log gets a state in the service's profile store.

    recsys-pref batch fold-in --model DIR --interactions FILE [--store URL]

Per chunk of users (batch.source): the rows whose item the model knows (and, with a
threshold, whose rating is at least it) become a (users, n_items) binary history matrix; the
model's exact inference (`PersonaRecommender.fold_in`, state bounds included, as the service
folds in) gives each user's state; and the chunk's states and items go into the store in one
transaction (`ProfileStore.put_states`), exactly as the service reads them: an existing
profile keeps its mute/boost and gets the new state. The file is each user's whole history:
a user who is also in the model's training data is folded in from the file alone.

Items the model does not know are dropped and counted; a user with no known positive item
gets no state (counted too). The store must be this model's (its hash) or new.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys_pref.batch.engines import ChunkFunction
from recsys_pref.batch.source import RowChunk, read_chunk
from recsys_pref.models.persona import PersonaRecommender
from recsys_pref.service.store import ProfileStore, StoreError


@dataclass(frozen=True)
class Histories:
    """A chunk's users as text ids (n,), their binary histories (n, n_items), the external ids
    of their known positive items as text, and what was dropped."""

    users: list[str]
    matrix: sp.csr_matrix
    items: list[list[str]]
    unknown_items: int
    users_without_positives: int


def item_index(item_ids: np.ndarray) -> pl.DataFrame:
    """(item_id, index) of the model's items: the join that maps a chunk's ids to columns."""
    return pl.DataFrame({"item_id": item_ids, "index": np.arange(len(item_ids), dtype=np.int64)})


def chunk_histories(frame: pl.DataFrame, items: pl.DataFrame, positive_threshold: float | None) -> Histories:
    """The chunk's rows (sorted by user) as histories over the model's items (`items`:
    `item_index`). Every row is a positive unless `positive_threshold` is given."""
    users_before = frame["user_id"].n_unique()
    if positive_threshold is not None:
        frame = frame.filter(pl.col("rating") >= positive_threshold)
    known = frame.select("user_id", pl.col("item_id").cast(items["item_id"].dtype)).join(
        items, on="item_id", how="inner", maintain_order="left")
    grouped = known.with_columns(row=pl.col("user_id").rle_id()).group_by("row", maintain_order=True).agg(
        pl.col("user_id").first(), pl.col("item_id").cast(pl.String), pl.col("index"))
    rows = np.repeat(np.arange(grouped.height), grouped["index"].list.len().to_numpy())
    columns = grouped["index"].explode().to_numpy() if grouped.height else np.zeros(0, np.int64)
    matrix = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, columns)), shape=(grouped.height, items.height))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0  # a repeated interaction is the same evidence
    return Histories(grouped["user_id"].cast(pl.String).to_list(), matrix, grouped["item_id"].to_list(),
                     frame.height - known.height, users_before - grouped.height)


@dataclass(frozen=True)
class FoldInJob:
    """The fold-in of one (sorted) interaction file into one store: picklable, for Ray."""

    model_dir: Path
    interactions: Path
    store_url: str
    model_hash: str
    positive_threshold: float | None = None
    name: str = "fold-in"

    def open(self) -> ChunkFunction:
        """Load the model and open the store once; returns the per-chunk function."""
        from recsys_pref.pipeline import PersonaPipeline

        pipeline = PersonaPipeline.load(self.model_dir)
        model = pipeline.model
        store = ProfileStore(self.store_url, model.config.state_size)
        if store.model_hash() != self.model_hash:
            raise StoreError(f"store {self.store_url} is not this model's (it was claimed by another model)")
        items = item_index(pipeline.item_ids.external)
        return lambda chunk: fold_in_chunk(chunk, self.interactions, model, items, store, self.positive_threshold)


def fold_in_chunk(chunk: dict[str, Any], path: Path, model: PersonaRecommender, items: pl.DataFrame,
                  store: ProfileStore, positive_threshold: float | None) -> dict[str, Any]:
    """Fold in one chunk's users and store them in one transaction; the chunk's report."""
    started = time.perf_counter()
    histories = chunk_histories(read_chunk(path, RowChunk(**chunk)), items, positive_threshold)
    stored = 0
    if histories.users:
        vectors = model.fold_in(histories.matrix).vectors()  # (n, M*(K+1))
        stored = store.put_states(list(zip(histories.users, vectors, histories.items)))
    return {"rows": chunk["rows"], "users": stored, "unknown_items": histories.unknown_items,
            "users_without_positives": histories.users_without_positives,
            "seconds": round(time.perf_counter() - started, 3)}
