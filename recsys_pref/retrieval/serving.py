"""The serving path's top-K: exact by default, approximate only when a recall target asks for it.

Below `RetrievalConfig.min_items` items, scoring every item is cheap and needs no index. From
that size on, `Retriever.top_k` goes through the candidate index (built on first use, or
loaded with the model artifact). The default index ("auto") is exact: a certified Flat scan
up to `IndexConfig.flat_max_items` items, the "ExactIVF" cell index above (both equal
exhaustive scoring, `retrieval.certified`, `retrieval.exact_ivf`). An approximate index is
used only when the configuration opts in with `recall_target`, and only at a setting whose
recall the retrieval benchmark measured (`MEASURED_APPROXIMATE`); its answers are then
labelled approximate (`Retriever.exact` is False).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from recsys_pref.models.artifact import ArtifactError
from recsys_pref.models.persona.scorer import ControlWeights, PersonaScorer
from recsys_pref.models.persona.state import PersonaState
from recsys_pref.retrieval.certified import CertifiedConfig, RetrievalResult, certified_top_k
from recsys_pref.retrieval.index import CandidateIndex, IndexConfig, is_exact
from recsys_pref.retrieval.norm_order import NormOrder, norm_order_top_k

LEGACY_LARGE_FACTORY = "IVF{nlist},Flat"  # the approximate default above 100k items before issue 18


@dataclass(frozen=True)
class MeasuredSetting:
    """An approximate index setting and the recall@10 `recsys-pref bench retrieval` measured
    for it on the 1M-item synthetic catalog (500 users; BENCHMARKS.md, issue 18), with the
    persona lists' length it was measured with."""

    recall: float
    factory: str
    candidates: int
    probe_share: float


#: Measured approximate settings, fastest first (BENCHMARKS.md, "Retrieval", issue 18): at 1M
#: items IVF-PQ ran at 2.5x implicit's ALS but reached recall@10 0.33, IVF-Flat 1.0 at 0.59x
#: (the exact "ExactIVF" default ran at 2.0x in the same run).
MEASURED_APPROXIMATE = (
    MeasuredSetting(recall=0.3296, factory="IVF{nlist},PQ{pq}x4fs", candidates=256, probe_share=0.125),
    MeasuredSetting(recall=1.0, factory="IVF{nlist},Flat", candidates=64, probe_share=0.125),
)


@dataclass(frozen=True)
class RetrievalConfig:
    """min_items: catalogs of at least this many items are served through the index. 50k: at
        ml-latest-small's 9.7k items exhaustive scoring served 830 users/s (about a millisecond
        each, no index to build or store), at 100k the certified Flat index served 2.9x as
        many users as exhaustive scoring (BENCHMARKS.md, "Retrieval").
    index: how the index is built and searched ("auto": Flat, "ExactIVF" above
        `flat_max_items`); it must be exact unless `recall_target` is set.
    certified: list lengths, widening and fallback of the certificate.
    recall_target: None (the default) serves exact answers only. A number opts in to the
        fastest approximate setting of MEASURED_APPROXIMATE whose measured recall@10 reaches
        it; a target above every measured recall is an error.
    norm_order: on the indexed path, first serve every user whose norm bound prunes the
        catalog to a short prefix (retrieval.norm_order: exact, 1% of the items on the planted
        100k catalog of `bench scale --models batch`, where the ExactIVF cells left 75% to
        scan); the others go through the index. False, or an approximate opt-in
        (`recall_target`, whose measured recall describes the index alone): the index alone.
    """

    min_items: int = 50_000
    index: IndexConfig = IndexConfig()
    certified: CertifiedConfig = CertifiedConfig()
    recall_target: float | None = None
    norm_order: bool = True

    def __post_init__(self) -> None:
        if self.min_items < 1:
            raise ValueError(f"RetrievalConfig: min_items must be >= 1, got {self.min_items}")
        if self.recall_target is not None:
            if not 0 < self.recall_target <= 1:
                raise ValueError(f"RetrievalConfig: recall_target must be in (0, 1], got {self.recall_target}")
            self.approximate_setting()  # raises when no measured setting reaches the target
        else:
            for name in ("factory", "large_factory"):
                factory = getattr(self.index, name)
                if factory != "auto" and not is_exact(factory):
                    raise ValueError(
                        f"RetrievalConfig: IndexConfig.{name} {factory!r} is approximate; opt in with "
                        "recall_target=<a measured recall> or use 'Flat' / 'ExactIVF{nlist}'")

    def approximate_setting(self) -> MeasuredSetting:
        """The fastest measured approximate setting reaching `recall_target`."""
        for setting in MEASURED_APPROXIMATE:
            if self.recall_target is not None and setting.recall >= self.recall_target:
                return setting
        measured = ", ".join(f"{setting.recall} ({setting.factory})" for setting in MEASURED_APPROXIMATE)
        raise ValueError(f"RetrievalConfig: no measured approximate index reaches recall_target "
                         f"{self.recall_target}; measured: {measured}. Leave recall_target unset for exact answers")

    @property
    def index_config(self) -> IndexConfig:
        """The index actually built: `index`, or the opted-in approximate setting above
        `flat_max_items` items."""
        if self.recall_target is None:
            return self.index
        setting = self.approximate_setting()
        return replace(self.index, factory="auto", large_factory=setting.factory, probe_share=setting.probe_share)

    @property
    def certified_config(self) -> CertifiedConfig:
        """The list settings used: `certified`, with the approximate setting's list length."""
        if self.recall_target is None:
            return self.certified
        candidates = self.approximate_setting().candidates
        return replace(self.certified, candidates=candidates, max_candidates=max(candidates, self.certified.max_candidates))


class Retriever:
    """Top-K of users' states over one catalog, through the index when the catalog is large.

    query_sample: states of users the index should be fast for (e.g. the known users); an
    "ExactIVF" index fits its subspace to their persona queries. Without one, the users of the
    first `top_k` call serve as the sample. Answers are exact whatever the sample.
    """

    def __init__(self, scorer: PersonaScorer, config: RetrievalConfig, index: CandidateIndex | None = None,
                 query_sample: PersonaState | None = None) -> None:
        if index is not None and index.n_items != scorer.shared.n_items:
            raise ValueError(f"the index holds {index.n_items} items, the model {scorer.shared.n_items}")
        if index is not None and not index.exact and config.recall_target is None:
            raise ValueError(f"the loaded index {index.factory!r} is approximate and the retrieval config "
                             "asks for exact answers: rebuild it, or set RetrievalConfig.recall_target")
        self.scorer, self.config, self._index, self._query_sample = scorer, config, index, query_sample

    @property
    def uses_index(self) -> bool:
        return self.scorer.shared.n_items >= self.config.min_items

    @property
    def exact(self) -> bool:
        """Whether every answer equals exhaustive scoring's (False when an approximate index
        was opted in to and the catalog is large enough to use it)."""
        if not self.uses_index:
            return True
        if self._index is not None:
            return self._index.exact
        return is_exact(self.config.index_config.resolve(self.scorer.shared.n_items))

    @property
    def index(self) -> CandidateIndex:
        """The candidate index, built on first use."""
        if self._index is None:
            shared = self.scorer.shared
            sample = None if self._query_sample is None else self.scorer.queries(self._query_sample)
            self._index = CandidateIndex.build(shared.item_embeddings, shared.item_bias, self.config.index_config,
                                               None if sample is None else sample.reshape(-1, sample.shape[-1]))
        return self._index

    @property
    def built_index(self) -> CandidateIndex | None:
        """The index if it exists (built or loaded), else None; never builds one."""
        return self._index

    def retrieve(self, state: PersonaState, k: int, exclude: sp.csr_matrix | None = None,
                 control: ControlWeights | None = None) -> RetrievalResult:
        """The top-k with how it was found: ids, scores and per user whether it is exact."""
        n = len(state)
        if not self.uses_index:
            ids, scores = self.scorer.top_k(state, k, exclude, control)
            return RetrievalResult(ids, scores, np.zeros(n, bool), np.ones(n, bool), np.full(n, self.scorer.shared.n_items))
        if not self.config.norm_order or self.config.recall_target is not None:
            return self._indexed(state, k, exclude, control)
        exclude = None if exclude is None else sp.csr_matrix(exclude)
        ids, scores, served, lengths = norm_order_top_k(self.norm_order, self.scorer, state, k, exclude, control,
                                                        self.config.certified.tolerance)
        if served.all():
            return RetrievalResult(ids, scores, served, np.zeros(n, bool), lengths)
        rest = np.flatnonzero(~served)
        indexed = self._indexed(PersonaState(state.coefficients[rest], state.prior_logits[rest]), k,
                                None if exclude is None else exclude[rest],
                                None if control is None else control.of_users(rest))
        ids[rest], scores[rest], lengths[rest] = indexed.ids, indexed.scores, indexed.scored
        certified, fallback = served.copy(), np.zeros(n, bool)
        certified[rest], fallback[rest] = indexed.certified, indexed.fallback
        return RetrievalResult(ids, scores, certified, fallback, lengths)

    def _indexed(self, state: PersonaState, k: int, exclude: sp.csr_matrix | None,
                 control: ControlWeights | None) -> RetrievalResult:
        """The candidate index's answer (retrieval.certified)."""
        if self._index is None and self._query_sample is None:
            self._query_sample = state
        return certified_top_k(self.index, self.scorer, state, k, exclude, self.config.certified_config, control)

    @cached_property
    def norm_order(self) -> NormOrder:
        """Every item by decreasing embedding norm (retrieval.norm_order), computed once."""
        return NormOrder.of(self.scorer.shared)

    def top_k(self, state: PersonaState, k: int, exclude: sp.csr_matrix | None = None,
              control: ControlWeights | None = None) -> tuple[np.ndarray, np.ndarray]:
        """ids (n, k) int64 and scores (n, k) float32 under `control`, padded with -1 / -inf,
        exclude's nonzeros (n, n_items) never returned; ties go to the lower item index either
        way. Exact unless `exact` is False."""
        result = self.retrieve(state, k, exclude, control)
        return result.ids, result.scores


def retrieval_config_from_dict(values: dict) -> RetrievalConfig:
    """Inverse of dataclasses.asdict for a RetrievalConfig (as stored in an artifact's metadata);
    a field this version does not know raises ArtifactError naming it. Configs stored before
    issue 18 name the then-default approximate "IVF{nlist},Flat" as `large_factory` without a
    recall target; they are read with the exact default in its place."""
    index = dict(values.get("index", {}))
    if values.get("recall_target") is None and index.get("large_factory") == LEGACY_LARGE_FACTORY:
        index["large_factory"] = IndexConfig.large_factory
    try:
        return RetrievalConfig(
            min_items=values.get("min_items", RetrievalConfig.min_items),
            index=IndexConfig(**index),
            certified=CertifiedConfig(**values.get("certified", {})),
            recall_target=values.get("recall_target"),
            norm_order=values.get("norm_order", RetrievalConfig.norm_order),
        )
    except (TypeError, ValueError) as error:
        raise ArtifactError(f"the stored retrieval config is not one this version reads: {error}") from error
