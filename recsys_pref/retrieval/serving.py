"""The serving path's top-K: exhaustive scoring for small catalogs, the certified index above.

Below `RetrievalConfig.min_items` items, scoring every item is cheap and needs no index.
From that size on, `Retriever.top_k` goes through the candidate index (built on first use,
or loaded with the model artifact) and `certified_top_k`: with the default "auto" index
(Flat up to 100k items) the answer is exactly exhaustive scoring's; above, IVF-Flat makes it
approximate (measured in BENCHMARKS.md, "Retrieval").
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recsys_pref.models.artifact import ArtifactError
from recsys_pref.models.persona.scorer import ControlWeights, PersonaScorer
from recsys_pref.models.persona.state import PersonaState
from recsys_pref.retrieval.certified import CertifiedConfig, certified_top_k
from recsys_pref.retrieval.index import CandidateIndex, IndexConfig


@dataclass(frozen=True)
class RetrievalConfig:
    """min_items: catalogs of at least this many items are served through the index. 50k: at
        ml-latest-small's 9.7k items exhaustive scoring served 830 users/s (about a millisecond
        each, no index to build or store), at 100k the certified Flat index served 2.9x as
        many users as exhaustive scoring (BENCHMARKS.md, "Retrieval").
    index: how the index is built and searched (type "auto": Flat, IVF-Flat above 100k items).
    certified: list lengths, widening and fallback of the certificate.
    """

    min_items: int = 50_000
    index: IndexConfig = IndexConfig()
    certified: CertifiedConfig = CertifiedConfig()

    def __post_init__(self) -> None:
        if self.min_items < 1:
            raise ValueError(f"RetrievalConfig: min_items must be >= 1, got {self.min_items}")


class Retriever:
    """Top-K of users' states over one catalog, through the index when the catalog is large."""

    def __init__(self, scorer: PersonaScorer, config: RetrievalConfig, index: CandidateIndex | None = None) -> None:
        if index is not None and index.n_items != scorer.shared.n_items:
            raise ValueError(f"the index holds {index.n_items} items, the model {scorer.shared.n_items}")
        self.scorer, self.config, self._index = scorer, config, index

    @property
    def uses_index(self) -> bool:
        return self.scorer.shared.n_items >= self.config.min_items

    @property
    def index(self) -> CandidateIndex:
        """The candidate index, built on first use."""
        if self._index is None:
            shared = self.scorer.shared
            self._index = CandidateIndex.build(shared.item_embeddings, shared.item_bias, self.config.index)
        return self._index

    @property
    def built_index(self) -> CandidateIndex | None:
        """The index if it exists (built or loaded), else None; never builds one."""
        return self._index

    def top_k(self, state: PersonaState, k: int, exclude: sp.csr_matrix | None = None,
              control: ControlWeights | None = None) -> tuple[np.ndarray, np.ndarray]:
        """ids (n, k) int64 and scores (n, k) float32 under `control`, padded with -1 / -inf,
        exclude's nonzeros (n, n_items) never returned; ties go to the lower item index either way."""
        if not self.uses_index:
            return self.scorer.top_k(state, k, exclude, control)
        result = certified_top_k(self.index, self.scorer, state, k, exclude, self.config.certified, control)
        return result.ids, result.scores


def retrieval_config_from_dict(values: dict) -> RetrievalConfig:
    """Inverse of dataclasses.asdict for a RetrievalConfig (as stored in an artifact's metadata);
    a field this version does not know raises ArtifactError naming it."""
    try:
        return RetrievalConfig(
            min_items=values.get("min_items", RetrievalConfig.min_items),
            index=IndexConfig(**values.get("index", {})),
            certified=CertifiedConfig(**values.get("certified", {})),
        )
    except TypeError as error:
        raise ArtifactError(f"the stored retrieval config is not one this version reads: {error}") from error
