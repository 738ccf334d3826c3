"""The reference engine of `bench serve`: implicit's ALS behind the same app and store.

ALS is fitted at start-up on the persona artifact's own training positives, with the persona
model's shared-side settings (d factors, its regularization, alpha and sweeps), so the two
engines differ only in what a stored state is and how it is ranked. A state is the user's d
ALS factors (d float32); a user is folded in by implicit's `recalculate_user` (ALS.fold_in);
ranking is the ALS score, user factors . item factors, with seen items removed. It has no
personas: recommendations carry user_id, rank, item_id and score only, and the routes that need
personas (onboarding, profiles, mute/boost, /score) answer 501 behind it.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys_pref.core.ranking import top_k
from recsys_pref.explain.control import Control
from recsys_pref.models.als import ALS, ALSConfig
from recsys_pref.models.persona import PersonaState
from recsys_pref.pipeline import PersonaPipeline
from recsys_pref.safeguards.config import SafeguardsConfig
from recsys_pref.service.engine import history_frame


class AlsEngine:
    """implicit's ALS on `pipeline`'s training data (see the module docstring)."""

    kind = "als"

    def __init__(self, pipeline: PersonaPipeline, model_hash: str) -> None:
        config = pipeline.model.config
        self.pipeline, self.model_hash = pipeline, f"als:{model_hash}"
        self.model = ALS(ALSConfig(factors=config.embedding_dim, regularization=config.regularization,
                                   alpha=config.alpha, iterations=config.als_iterations)).fit(pipeline.histories)
        self.state_size = config.embedding_dim

    def _seen(self, users: Sequence[Any], items: Sequence[Sequence[Any]]) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """(n, n_items) positives (model history + items) and everything seen, per user."""
        population = self.pipeline.population_state  # a placeholder: only the histories are used
        placeholder = PersonaState(np.repeat(population.coefficients, len(users), axis=0),
                                   np.repeat(population.prior_logits, len(users), axis=0))
        batch = self.pipeline.user_batch(list(users), history_frame(self.pipeline, users, items), states=placeholder)
        return batch.histories, batch.seen

    def fold_in(self, users: Sequence[Any], items: Sequence[Sequence[Any]]) -> np.ndarray:
        positives, _ = self._seen(users, items)
        return self.model.fold_in(positives)

    def recommend(self, users: Sequence[Any], states: np.ndarray, items: Sequence[Sequence[Any]], k: int,
                  control: Control | None, safeguards: SafeguardsConfig | None) -> pl.DataFrame:
        _, seen = self._seen(users, items)
        ids, scores = top_k(np.asarray(states, np.float32) @ self.model.item_factors.T, k, exclude=seen)
        rows, ranks = np.nonzero(ids >= 0)
        user_dtype = pl.Series(self.pipeline.user_ids.external[:1].tolist()).dtype
        return pl.DataFrame({
            "user_id": pl.Series([users[row] for row in rows], dtype=user_dtype),
            "rank": (ranks + 1).astype(np.int32),
            "item_id": self.pipeline.item_ids.to_external(ids[rows, ranks]).tolist(),
            "score": scores[rows, ranks].astype(np.float32),
        })
