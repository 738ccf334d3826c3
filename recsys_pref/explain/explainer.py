"""The explanation layer of one fitted persona model with its item metadata.

`Explainer` holds what explanations need besides a user's state: the scorer, each item's tags
(genres and tags), which items are well enough known to label with (`eligible`), and the
base labels (computed once). PersonaPipeline uses it for the explanation columns of
`recommend`, for `explain`, `summary` and `recommend_adjusted`; the explanations bench uses it
on a split's test users.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys_pref.explain.attribution import RecommendationExplanations, explain_recommendations
from recsys_pref.explain.control import Control, control_weights
from recsys_pref.explain.labels import (
    TOP_ITEMS,
    BaseLabel,
    TagIncidence,
    PersonaDescription,
    base_labels,
    describe_personas,
    eligible_items,
    item_tag_lists,
)
from recsys_pref.explain.summary import SummaryLength, persona_mix, render_summaries, summarize
from recsys_pref.explain.vocabulary import SummaryVocabulary
from recsys_pref.models.persona.scorer import ControlWeights, PersonaScorer
from recsys_pref.models.persona.state import PersonaState


@dataclass
class Explainer:
    """scorer: the fitted model's scorer; item_tags: per item its genres and tags; eligible:
    (n_items,) bool, items used for labels (see explain.labels); persona_tops: finds each
    persona's top eligible items, (state, n_top) -> (n, M, n_top), without scoring the whole
    catalog (the pipeline's retrieval.norm_order.PersonaTopItems); None ranks the catalog."""

    scorer: PersonaScorer
    item_tags: list[list[str]]
    eligible: np.ndarray
    vocabulary: SummaryVocabulary | None = None
    persona_tops: Callable[[PersonaState, int], np.ndarray] | None = None
    _bases: list[BaseLabel] | None = field(default=None, init=False, repr=False)
    _tag_incidence: TagIncidence = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._tag_incidence = TagIncidence.of(self.item_tags)  # once: every label's tags counted in one product

    @classmethod
    def for_items(cls, scorer: PersonaScorer, items: pl.DataFrame, training: sp.spmatrix) -> "Explainer":
        """From a dataset's `items` frame and the (n_users, n_items) training positives."""
        item_users = np.asarray((sp.csr_matrix(training) > 0).sum(axis=0)).ravel()
        if items.height != len(item_users):
            raise ValueError(f"{items.height} items have metadata but the training matrix has {len(item_users)}")
        return cls(scorer, item_tag_lists(items), eligible_items(item_users))

    @property
    def bases(self) -> list[BaseLabel]:
        """A label per shared base (computed on first use)."""
        if self._bases is None:
            self._bases = base_labels(self.scorer, self.item_tags, self.eligible, tags=self._tag_incidence)
        return self._bases

    def describe(self, state: PersonaState) -> list[list[PersonaDescription]]:
        """Per user, a description of each persona."""
        tops = None if self.persona_tops is None else self.persona_tops(state, TOP_ITEMS)
        return describe_personas(self.scorer, state, self.item_tags, self.eligible, self.bases,
                                 tags=self._tag_incidence, top_items=tops)

    def explain(
        self, state: PersonaState, histories: sp.csr_matrix, items: np.ndarray, control: ControlWeights | None = None,
        described: list[list[PersonaDescription]] | None = None,
    ) -> tuple[RecommendationExplanations, list[list[PersonaDescription]]]:
        """Explanations of `items` (n, L; -1 = none) under `control`, and the persona descriptions."""
        described = self.describe(state) if described is None else described
        return explain_recommendations(self.scorer, state, histories, items, control), described

    def control_weights(
        self, state: PersonaState, control: Control | None, described: list[list[PersonaDescription]] | None = None
    ) -> ControlWeights | None:
        """The scorer's weights for `control` (labels resolved against these users' personas and
        the base labels); None when `control` changes nothing."""
        if control is None or not (control.personas or control.bases):
            return None
        described = self.describe(state) if described is None else described
        return control_weights(control, [[persona.label for persona in user] for user in described],
                               [base.label for base in self.bases])

    def with_vocabulary(self, training_states: PersonaState, titles: list[str] | None = None) -> "Explainer":
        """This explainer with the summary vocabulary learned from `training_states` (the
        training users' states; `titles` one per item), so that `summaries` round-trip."""
        self.vocabulary = SummaryVocabulary.from_states(self, training_states, titles)
        return self

    def summaries(self, state: PersonaState, length: SummaryLength = "sentence") -> list[str]:
        """One summary per user (explain.summary): with a vocabulary, the text that
        explain.summary_parser.state_from_summary reads back into a state (at `length`);
        without one, the descriptive sentence of `summarize`."""
        if self.vocabulary is not None:
            return render_summaries(self, self.vocabulary, state, length)
        mix = persona_mix(self.scorer.terms(state))
        return [summarize(personas, weights) for personas, weights in zip(self.describe(state), mix)]


@dataclass(frozen=True)
class ItemExplanation:
    """Why one item scores as it does for one user (ids are external; `supporting` pairs
    (item id, title) of the "because you liked" items; `bases`: the explaining persona's
    strongest bases as (base, signed strength, label of the pole it leans to))."""

    user_id: Any
    item_id: Any
    title: str
    score: float
    persona: int
    persona_labels: list[str]
    attention: list[float]
    shares: list[float]
    supporting: list[tuple[Any, str]]
    bases: list[tuple[int, float, str]]

    @classmethod
    def of(
        cls, explained: RecommendationExplanations, personas: list[PersonaDescription], user_id: Any,
        names: Callable[[np.ndarray], list[tuple[Any, str]]],
    ) -> "ItemExplanation":
        """The explanation of the single item explained for a single user."""
        persona = int(explained.persona[0, 0])
        ((item_id, title),) = names(explained.items[0, :1])
        return cls(
            user_id, item_id, title, float(explained.scores[0, 0]), persona, [p.label for p in personas],
            explained.attention[0, :, 0].tolist(), explained.shares[0, :, 0].tolist(),
            names(np.array(explained.supporting[0][0], np.int64)), personas[persona].bases,
        )

    def __str__(self) -> str:
        m = self.persona
        lines = [
            f"{self.title} ({self.item_id}) for user {self.user_id}: score {self.score:.3f}",
            f"  persona {m} ({self.persona_labels[m]}): {self.attention[m]:.0%} of the attention, "
            f"{self.shares[m]:.3f} of the score",
        ]
        lines += [
            f"  persona {other} ({name}): {self.attention[other]:.0%} of the attention, {self.shares[other]:.3f} of the score"
            for other, name in enumerate(self.persona_labels) if other != m
        ]
        lines.append("  strongest bases of persona " + str(m) + ": "
                     + ", ".join(f"{k} ({name}, {strength:+.2f})" for k, strength, name in self.bases))
        if self.supporting:
            lines.append("  because you liked: " + "; ".join(title for _, title in self.supporting))
        return "\n".join(lines)
