"""`PersonaPipeline.recommend(..., safeguards=...)`: the safeguarded slate in the pipeline's
frame, with an `exploration` column; exploration rows are labelled "exploration: <label of
the item's base>" in persona_label, so the explanation says why an unusual item is there."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys_pref.models.persona import PersonaState
from recsys_pref.safeguards.config import SafeguardsConfig
from recsys_pref.safeguards.slate import SlateBuilder

if TYPE_CHECKING:
    from recsys_pref.pipeline import PersonaPipeline

EXPLORATION_LABEL = "exploration: {}"


def safeguarded_frame(
    pipeline: "PersonaPipeline", users: list[Any], histories: sp.csr_matrix, state: PersonaState, k: int,
    safeguards: SafeguardsConfig, filter_seen: bool = True,
) -> pl.DataFrame:
    """The recommend frame for `users` (their (n, n_items) histories and folded-in state),
    built with `safeguards`."""
    genres = pipeline.items["genres"].to_list() if "genres" in pipeline.items.columns else None
    builder = SlateBuilder.for_model(pipeline.model, genres)
    exclude = histories if filter_seen else sp.csr_matrix(histories.shape, dtype=np.float32)
    slates = builder.build(state, histories, k, safeguards, exclude=exclude)
    frame = pipeline._frame(users, slates.items, slates.scores, slates.state, histories)
    rows, ranks = np.nonzero(slates.items >= 0)
    explored = slates.exploration[rows, ranks]
    base_names = [base.label for base in pipeline.explainer.bases]
    dominant = builder.item_bases.argmax(axis=1)[slates.items[rows, ranks]]
    labels = [EXPLORATION_LABEL.format(base_names[base]) if flag else label
              for flag, base, label in zip(explored, dominant, frame["persona_label"].to_list())]
    return frame.with_columns(pl.Series("persona_label", labels, dtype=pl.String),
                              pl.Series("exploration", explored, dtype=pl.Boolean))
