"""What the service asks of a model: states from items, and ranked rows for states.

`PersonaEngine` is the persona model through the one serving pipeline (pipeline.PersonaPipeline):
fold-in and recommendations both go through it, and nothing here computes a score. The ALS
reference of `bench serve` (service.reference) answers the same two calls, so the store, the
batching and the routes are the same for both.

A state travels as a flat float32 vector (D,) = PersonaState.vectors()'s row: M*K coefficients
then M prior logits (M = 2, K = 32: 66 numbers, 264 bytes).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
import polars as pl

from recsys_pref.explain.control import Control
from recsys_pref.models.artifact import MANIFEST_FILE
from recsys_pref.models.persona import PersonaState
from recsys_pref.pipeline import PersonaPipeline
from recsys_pref.safeguards.config import SafeguardsConfig


def artifact_hash(model_dir: Path) -> str:
    """sha256 of the artifact's manifest, which holds the sha256 of every file: the model's
    identity (another fit, even on the same data, gives another hash)."""
    return hashlib.sha256((Path(model_dir) / MANIFEST_FILE).read_bytes()).hexdigest()


class Engine(Protocol):
    """A model behind the service. users: external ids of the model's type; items: per user,
    external item ids (positives) on top of what the model already holds for that user."""

    kind: str
    pipeline: PersonaPipeline  # ids, item metadata and the known users' data
    model_hash: str
    state_size: int

    def fold_in(self, users: Sequence[Any], items: Sequence[Sequence[Any]]) -> np.ndarray:
        """(n, D) states of `users` from their model history plus `items` (the population
        prior, or zeros for ALS, when both are empty)."""

    def recommend(self, users: Sequence[Any], states: np.ndarray, items: Sequence[Sequence[Any]], k: int,
                  control: Control | None, safeguards: SafeguardsConfig | None) -> pl.DataFrame:
        """Top-k rows per user for the given states, `items` and the model's history filtered
        as seen, in the pipeline's schema (RECOMMENDATION_COLUMNS; ALS: the columns it has)."""


def history_frame(pipeline: PersonaPipeline, users: Sequence[Any], items: Sequence[Sequence[Any]]) -> pl.DataFrame | None:
    """(user_id, item_id) rows of `items` per user, in the model's id types; None when empty."""
    pairs = [(user, item) for user, user_items in zip(users, items) for item in user_items]
    if not pairs:
        return None
    user_dtype = pl.Series(pipeline.user_ids.external[:1].tolist()).dtype
    item_dtype = pl.Series(pipeline.item_ids.external[:1].tolist()).dtype
    return pl.DataFrame({"user_id": pl.Series([user for user, _ in pairs], dtype=user_dtype),
                         "item_id": pl.Series([item for _, item in pairs], dtype=item_dtype)})


class PersonaEngine:
    """The persona model's serving pipeline behind the service."""

    kind = "persona"

    def __init__(self, pipeline: PersonaPipeline, model_hash: str) -> None:
        self.pipeline, self.model_hash = pipeline, model_hash
        # Built now, not by the first request: the labels, the summary vocabulary and the index
        # took the first requests' latency to seconds (bench serve's p99 on its first route).
        pipeline.explainer.bases  # noqa: B018
        pipeline.retriever  # noqa: B018
        config = pipeline.model.config
        self.n_personas, self.n_bases = config.n_personas, pipeline.model.shared.n_bases
        self.state_size = self.n_personas * (self.n_bases + 1)

    def states(self, vectors: np.ndarray) -> PersonaState:
        """(n, D) vectors as a PersonaState (n, M, K) + (n, M)."""
        return PersonaState.from_vectors(vectors, self.n_personas, self.n_bases)

    def fold_in(self, users: Sequence[Any], items: Sequence[Sequence[Any]]) -> np.ndarray:
        batch = self.pipeline.user_batch(list(users), history_frame(self.pipeline, users, items),
                                         unknown_users="population")
        return batch.state.vectors()

    def recommend(self, users: Sequence[Any], states: np.ndarray, items: Sequence[Sequence[Any]], k: int,
                  control: Control | None, safeguards: SafeguardsConfig | None, explain: bool = True) -> pl.DataFrame:
        return self.pipeline.recommend(list(users), k, history=history_frame(self.pipeline, users, items),
                                       control=control, safeguards=safeguards, states=self.states(states),
                                       explain=explain)
