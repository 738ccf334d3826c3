"""The one serving pipeline: the persona model with its dataset's ids and metadata.

Every recommendation goes through the same stages (DESIGN.md, "One serving pipeline"):

    users -> states -> candidates -> rerankers -> explainer -> one frame

- states: known users (their training history), new users folded in from a `history` frame, or
  states given directly (an onboarding session's); users without any get the population prior
  when `unknown_users="population"`. A known user none of whose ratings is a positive (all
  below the dataset's threshold) is still known: their positive history is empty, so their
  state is the population prior, and their rated items are still filtered as seen.
- seen items: `filter_seen="all"` (the default) never returns an item the user interacted with,
  whatever the rating (every training row, kept in `seen`, plus any `history` rows);
  "positives" filters only the positives the state was folded in from; "none" filters nothing.
- candidates: the retriever's top items per user (retrieval.serving: exhaustive scoring, or the
  certified FAISS index for large catalogs), under the user's control weights (mute/boost).
- rerankers: the echo-chamber safeguards (bounded states, calibration, exploration;
  safeguards.slate), in any combination and together with control.
- explainer: the persona each item satisfies, its label, attention and share of the score, and
  "because you liked" (explain.explainer); persona labels come from one function
  (explain.labels.describe_personas) everywhere.

The output frame's columns are `RECOMMENDATION_COLUMNS`. For other pipelines there are two
seams: `score(candidates)` scores and explains `user_id, item_id` rows an upstream retriever
produced, and `explain_many(pairs)` adds "because you liked" to the same.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import polars as pl
import pyarrow as pa
import scipy.sparse as sp

from recsys_pref.data.dataset import IdMap, InteractionDataset, UnknownIdError, check_trainable
from recsys_pref.explain.control import Control
from recsys_pref.explain.explainer import Explainer, ItemExplanation
from recsys_pref.explain.labels import PersonaDescription
from recsys_pref.explain.summary import SummaryLength
from recsys_pref.explain.summary_parser import state_from_summary
from recsys_pref.models.artifact import ArtifactError, csr_arrays, csr_from_arrays, load_artifact, save_artifact
from recsys_pref.models.persona import PersonaConfig, PersonaRecommender, PersonaState
from recsys_pref.models.persona.scorer import ControlWeights
from recsys_pref.retrieval.index import CandidateIndex
from recsys_pref.retrieval.norm_order import NormOrder, PersonaTopItems
from recsys_pref.retrieval.serving import RetrievalConfig, Retriever, retrieval_config_from_dict
from recsys_pref.safeguards.config import SafeguardsConfig
from recsys_pref.safeguards.slate import SlateBuilder

UnknownUsers = Literal["error", "population"]
FilterSeen = Literal["all", "positives", "none"]
FILTER_SEEN = ("all", "positives", "none")
ARTIFACT_KIND = "persona-pipeline"
INDEX_FILE = "index.faiss"  # the candidate index inside the artifact directory
MODEL_PREFIX = "model."  # the model's own arrays inside the pipeline's artifact
FOLD_IN_BATCH = 4096  # users folded in at once when a pipeline is built (memory: batch x n_items)
EXPLORATION_LABEL = "exploration: {}"
VOCABULARY_USERS = 2000  # training users whose states define the summary vocabulary
QUERY_SAMPLE = 2048  # known users whose states shape an exact IVF index's projection
#: The one output schema of `recommend` (column -> meaning); `score` and `explain_many` return
#: the candidate rows with the columns from "score" on (without rank and exploration).
RECOMMENDATION_COLUMNS: dict[str, str] = {
    "user_id": "the user, in the dataset's ids",
    "rank": "1-based position in the user's list",
    "item_id": "the recommended item, in the dataset's ids",
    "score": "s(u, i), the model's score (float32, score units)",
    "persona": "the persona the item satisfies: the one with the largest attention for it",
    "persona_label": "that persona's label (its top items' most distinctive tags); exploration rows: the item's base",
    "persona_weight": "that persona's attention for the item, in [0, 1]",
    "score_share": "that persona's part of the score; the shares of all personas sum to the score",
    "because_you_liked": "the user's own history items that most support that persona, strongest first",
    "exploration": "True for a slot the exploration safeguard gave to a taste the user has seen least",
}


@dataclass(frozen=True)
class UserBatch:
    """Users being served: ids (external), histories (n, n_items) what each is known to have
    liked (training positives plus any `history` given), seen (n, n_items) everything each
    interacted with (every training row, any rating, plus any `history`), state their persona
    states."""

    ids: list[Any]
    histories: sp.csr_matrix
    seen: sp.csr_matrix
    state: PersonaState


@dataclass(frozen=True)
class Slate:
    """The ranked stage's output: items (n, k) int64 and scores (n, k) float32, padded with -1 /
    -inf; exploration (n, k) bool; state the states the slate was ranked for (bounded by the
    safeguards when they are on)."""

    items: np.ndarray
    scores: np.ndarray
    exploration: np.ndarray
    state: PersonaState


@dataclass
class PersonaPipeline:
    """model: a fitted PersonaRecommender; histories: (n_users, n_items) training positives of
    the known users, rows in `user_ids` order; seen: (n_users, n_items) every interaction of the
    known users, whatever the rating (what filter_seen="all" excludes); population_state: the
    mean training state."""

    model: PersonaRecommender
    user_ids: IdMap
    item_ids: IdMap
    items: pl.DataFrame
    histories: sp.csr_matrix
    seen: sp.csr_matrix
    population_state: PersonaState
    dataset_name: str
    retrieval: RetrievalConfig = RetrievalConfig()  # how candidates are found (retrieval.serving); read once
    loaded_index: CandidateIndex | None = None  # the artifact's candidate index, else built on first use

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def fit(cls, dataset: InteractionDataset, config: PersonaConfig | None = None) -> "PersonaPipeline":
        """Train the persona model on all of `dataset`'s positives; every interaction (any
        rating) is kept as seen. A dataset with fewer than 2 users or 2 items with positives is
        refused before training (data.dataset.check_trainable)."""
        check_trainable(dataset)
        histories = dataset.to_csr()
        model = PersonaRecommender(config or PersonaConfig()).fit(histories)
        return cls.from_model(model, dataset, histories, dataset.to_csr(dataset.interactions))

    @classmethod
    def from_model(
        cls, model: PersonaRecommender, dataset: InteractionDataset, histories: sp.csr_matrix,
        seen: sp.csr_matrix | None = None,
    ) -> "PersonaPipeline":
        """Wrap a model fitted on `histories` (rows = dataset users, columns = dataset items);
        `seen`: every interaction of those users, any rating (default: `histories` itself, e.g.
        for a split's training rows, whose held-out users are served through `history`).
        The population prior is the mean state of the users with a history, folded in
        FOLD_IN_BATCH users at a time so memory stays bounded whatever the number of users."""
        seen = histories if seen is None else sp.csr_matrix(seen, dtype=np.float32)
        for name, matrix in (("histories", histories), ("seen", seen)):
            if matrix.shape != (dataset.n_users, dataset.n_items):
                raise ValueError(f"{name} have shape {matrix.shape}, the dataset {dataset.n_users, dataset.n_items}")
        active = np.flatnonzero(np.diff(histories.indptr) > 0)
        if not len(active):
            raise ValueError("no user has a positive interaction: nothing to build a population prior from")
        coefficient_sum = np.zeros(model.scorer.shared.n_bases * model.config.n_personas, np.float64)
        logit_sum = np.zeros(model.config.n_personas, np.float64)
        for start in range(0, len(active), FOLD_IN_BATCH):
            states = model.fold_in(histories[active[start : start + FOLD_IN_BATCH]])
            coefficient_sum += states.coefficients.reshape(len(states), -1).sum(axis=0)
            logit_sum += states.prior_logits.sum(axis=0)
        population = PersonaState((coefficient_sum / len(active)).reshape(1, model.config.n_personas, -1),
                                  (logit_sum / len(active))[None])
        return cls(model, dataset.user_ids, dataset.item_ids, dataset.items, histories, seen, population,
                   dataset.name)

    # -- users' states ---------------------------------------------------------------------
    def user_batch(
        self, users: pl.DataFrame | pl.Series | Sequence[Any], history: pl.DataFrame | None = None,
        unknown_users: UnknownUsers = "error", states: PersonaState | None = None,
    ) -> UserBatch:
        """The users' histories and states. `states` (one row per user, e.g. from onboarding) are
        used as given; otherwise each user's state is folded in from their history (training rows
        plus `history` rows), and a user with none is an error or, with
        unknown_users="population", gets the population prior."""
        ids = _user_list(users)
        try:
            pl.Series(ids, dtype=self._user_dtype())
        except (TypeError, OverflowError, pl.exceptions.PolarsError) as error:
            raise TypeError(f"user ids must be {self._user_dtype()} like the model's, got {ids[:5]!r}") from error
        histories, seen, empty = self._histories(ids, history, unknown_users if states is None else "population")
        if states is not None:
            if not isinstance(states, PersonaState) or len(states) != len(ids):
                raise ValueError(f"states must be a PersonaState with one row per user ({len(ids)}), "
                                 f"got {type(states).__name__} of {len(states) if isinstance(states, PersonaState) else '?'}")
            return UserBatch(ids, histories, seen, states)
        return UserBatch(ids, histories, seen, self._fold_in(histories, empty))

    def _histories(
        self, users: list[Any], history: pl.DataFrame | None, unknown_users: UnknownUsers
    ) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray]:
        """(n, n_items) positive histories and seen items of `users`, and a mask of users with no
        positive history (they get the population prior). A user is unknown when the model has
        no row for them and `history` gives none: an error unless unknown_users="population"."""
        if unknown_users not in ("error", "population"):
            raise ValueError(f"unknown_users must be 'error' or 'population', got {unknown_users!r}")
        if not users:
            raise ValueError("no users given")
        known = np.array([user in self.user_ids for user in users], bool)
        rows = np.zeros(len(users), np.int64)
        if known.any():
            rows[known] = self.user_ids.to_index([user for user, flag in zip(users, known) if flag])
        selector = sp.csr_matrix((np.ones(int(known.sum()), np.float32), (np.flatnonzero(known), rows[known])),
                                 shape=(len(users), len(self.user_ids)))
        matrix = (selector @ self.histories).minimum(1.0).tocsr()  # (n, n_items): known users' rows, others empty
        seen = (selector @ self.seen).minimum(1.0).tocsr()
        if history is not None and history.height:
            missing = {"user_id", "item_id"} - set(history.columns)
            if missing:
                raise ValueError(f"history needs columns user_id and item_id; missing {sorted(missing)}")
            positions: dict[Any, list[int]] = {}  # a user asked for twice gets the history in both rows
            for position, user in enumerate(users):
                positions.setdefault(user, []).append(position)
            frame = history.filter(pl.col("user_id").is_in(users))
            items = self.item_ids.to_index(frame["item_id"].to_numpy())
            pairs = [(position, item) for user, item in zip(frame["user_id"].to_list(), items)
                     for position in positions[user]]
            extra = sp.csr_matrix(
                (np.ones(len(pairs), np.float32),
                 ([position for position, _ in pairs], [item for _, item in pairs])),
                shape=matrix.shape,
            )
            matrix = (matrix + extra).minimum(1.0).tocsr()
            seen = (seen + extra).minimum(1.0).tocsr()
            known |= np.diff(extra.indptr) > 0
        empty = np.diff(matrix.indptr) == 0
        if not known.all() and unknown_users == "error":
            unknown = [users[i] for i in np.flatnonzero(~known)]
            shown = ", ".join(repr(user) for user in unknown[:5])
            raise UnknownIdError(
                f"no history for user(s) {shown}: pass their interactions as `history`, or "
                "unknown_users='population' to serve the population prior"
            )
        return matrix, seen, empty

    def _fold_in(self, histories: sp.csr_matrix, empty: np.ndarray) -> PersonaState:
        """Folded-in states; users with an empty history get the population prior."""
        n = histories.shape[0]
        coefficients = np.repeat(self.population_state.coefficients, n, axis=0)
        prior_logits = np.repeat(self.population_state.prior_logits, n, axis=0)
        if (~empty).any():
            folded = self.model.fold_in(histories[~empty])
            coefficients[~empty], prior_logits[~empty] = folded.coefficients, folded.prior_logits
        return PersonaState(coefficients, prior_logits)

    # -- the serving path ------------------------------------------------------------------
    def recommend(
        self,
        users: pl.DataFrame | pl.Series | Sequence[Any],
        k: int = 10,
        *,
        history: pl.DataFrame | None = None,
        unknown_users: UnknownUsers = "error",
        filter_seen: FilterSeen = "all",
        control: Control | None = None,
        safeguards: SafeguardsConfig | None = None,
        states: PersonaState | None = None,
        explain: bool = True,
    ) -> pl.DataFrame:
        """Top-k per user as one frame with the columns of `RECOMMENDATION_COLUMNS`.

        history: extra (user_id, item_id) rows, folded in (new users, or known users' recent
        items); states: one state per user to serve as given (an onboarding session's);
        control: mute or boost personas and bases (explain.control); safeguards: the
        echo-chamber rerankers (safeguards.config), combinable with control.
        filter_seen: "all" (default) excludes every item the user interacted with, whatever
        the rating; "positives" only their positives; "none" nothing. A user with fewer than k
        unfiltered items gets fewer rows; k above the catalog size is capped at it.
        explain=False: the same rows and schema with the explanation columns (persona,
        persona_label, persona_weight, score_share, because_you_liked) null: the ranking alone,
        for batch jobs that do not show explanations."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"k must be a whole number, got {k!r}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if filter_seen not in FILTER_SEEN:
            raise ValueError(f"filter_seen must be one of {', '.join(map(repr, FILTER_SEEN))}, got {filter_seen!r}")
        batch = self.user_batch(users, history, unknown_users, states)
        described = self.explainer.describe(batch.state) if explain else None  # control describes when it needs to
        weights = self.explainer.control_weights(batch.state, control, described)
        slate = self._rank(batch, min(int(k), len(self.item_ids)), filter_seen, weights, safeguards)
        if described is None:
            return self._ranked_frame(batch, slate, {})
        return self._frame(batch, slate, weights, described)

    def _rank(
        self, batch: UserBatch, k: int, filter_seen: FilterSeen, weights: ControlWeights | None,
        safeguards: SafeguardsConfig | None,
    ) -> Slate:
        """Candidates from the retriever, then the safeguards' reranking when any is on."""
        exclude = {"all": batch.seen, "positives": batch.histories,
                   "none": sp.csr_matrix(batch.histories.shape, dtype=np.float32)}[filter_seen]
        if safeguards is None or not safeguards.active:
            ids, scores = self.retriever.top_k(batch.state, k, exclude, weights)
            return Slate(ids, scores, np.zeros(ids.shape, bool), batch.state)
        bounded = self.slate_builder.bounded(batch.state, safeguards.state_bounds)
        pool = self.retriever.top_k(bounded, max(safeguards.candidates, k), exclude, weights)
        built = self.slate_builder.build(batch.state, batch.histories, k, safeguards, exclude=exclude,
                                         control=weights, pool=pool)
        return Slate(built.items, built.scores, built.exploration, built.state)

    @cached_property
    def retriever(self) -> Retriever:
        """The candidate stage: exhaustive scoring below `retrieval.min_items` items, the
        certified candidate index from that size on (retrieval.serving)."""
        indexed = self.model.shared.n_items >= self.retrieval.min_items
        return Retriever(self.model.scorer, self.retrieval, self.loaded_index,
                         query_sample=self._query_sample() if indexed else None)

    def _query_sample(self) -> PersonaState:
        """Up to QUERY_SAMPLE known users' states, a seeded sample: the queries an exact IVF index
        fits its projection to (answers are exact either way; only speed depends on it)."""
        active = np.flatnonzero(np.diff(self.histories.indptr) > 0)
        chosen = np.sort(np.random.default_rng(0).choice(active, min(QUERY_SAMPLE, len(active)), replace=False))
        return self.model.fold_in(self.histories[chosen])

    @cached_property
    def slate_builder(self) -> SlateBuilder:
        """The safeguards' reranker for this model and its items' genres; the training
        interactions per item stand for the population's exposure (the exposure penalty)."""
        genres = self.items["genres"].to_list() if "genres" in self.items.columns else None
        return SlateBuilder.for_model(self.model, genres, item_exposure=np.asarray(self.histories.sum(axis=0)).ravel())

    @cached_property
    def explainer(self) -> Explainer:
        """Base labels, persona descriptions, explanations and the summary vocabulary (learned from
        a seeded sample of VOCABULARY_USERS training users) for this model (explain.explainer)."""
        explainer = Explainer.for_items(self.model.scorer, self.items, self.histories)
        explainer.persona_tops = PersonaTopItems(self.model.scorer, NormOrder.of(self.model.shared, explainer.eligible))
        active = np.flatnonzero(np.diff(self.histories.indptr) > 0)
        sample = np.sort(np.random.default_rng(0).choice(active, min(VOCABULARY_USERS, len(active)), replace=False))
        titles = [str(title) for title in self.items["title"].to_list()] if "title" in self.items.columns else None
        try:
            return explainer.with_vocabulary(self.model.fold_in(self.histories[sample]), titles)
        except ValueError:  # too little data for any label to enter a vocabulary: descriptive summaries
            return explainer

    def _frame(
        self, batch: UserBatch, slate: Slate, weights: ControlWeights | None,
        described: list[list[PersonaDescription]],
    ) -> pl.DataFrame:
        """One row per ranked item (slate.items (n, k), -1 = none) with its explanation."""
        if slate.state is not batch.state:  # the safeguards bounded the states: describe what was served
            described = self.explainer.describe(slate.state)
        explained, _ = self.explainer.explain(slate.state, batch.histories, slate.items, weights, described)
        rows, ranks = np.nonzero(slate.items >= 0)
        items = slate.items[rows, ranks]
        persona = explained.persona[rows, ranks]
        explored = slate.exploration[rows, ranks]
        labels = np.array([[persona_description.label for persona_description in user] for user in described],
                          dtype=object).reshape(len(described), -1)[rows, persona]  # (R,) the explaining persona's
        if explored.any():
            base_names = np.array([EXPLORATION_LABEL.format(base.label) for base in self.explainer.bases], dtype=object)
            dominant_base = self.slate_builder.item_bases.argmax(axis=1)
            labels[explored] = base_names[dominant_base[items[explored]]]
        return self._ranked_frame(batch, slate, {
            "persona": pl.Series(persona.astype(np.int32)),
            "persona_label": pl.Series(labels.tolist(), dtype=pl.String),
            "persona_weight": pl.Series(explained.attention[rows, persona, ranks].astype(np.float32)),
            "score_share": pl.Series(explained.shares[rows, persona, ranks].astype(np.float32)),
            "because_you_liked": self._item_lists(explained.support[rows, ranks]),
        })

    def _ranked_frame(self, batch: UserBatch, slate: Slate, explanations: dict[str, pl.Series]) -> pl.DataFrame:
        """The RECOMMENDATION_COLUMNS frame of a slate's rows (slate.items (n, k), -1 = none):
        the ranking's columns, and the `explanations` columns given (null where not given)."""
        rows, ranks = np.nonzero(slate.items >= 0)
        ranked = {
            "user_id": pl.Series(batch.ids, dtype=self._user_dtype()).gather(rows),
            "rank": pl.Series((ranks + 1).astype(np.int32)),
            "item_id": pl.Series(self.item_ids.to_external(slate.items[rows, ranks]).tolist(),
                                 dtype=self._item_dtype()),
            "score": pl.Series(slate.scores[rows, ranks].astype(np.float32)),
            "exploration": pl.Series(slate.exploration[rows, ranks], dtype=pl.Boolean),
        }
        null_types = {"persona": pl.Int32, "persona_label": pl.String, "persona_weight": pl.Float32,
                      "score_share": pl.Float32, "because_you_liked": pl.List(self._item_dtype())}
        columns = ranked | {name: explanations.get(name, pl.Series([None] * len(rows), dtype=dtype))
                            for name, dtype in null_types.items()}
        return pl.DataFrame({name: columns[name] for name in RECOMMENDATION_COLUMNS})

    def _item_lists(self, padded: np.ndarray) -> pl.Series:
        """Rows of item indices (R, S), -1 = none, as a List column of external ids (R,)."""
        kept = padded >= 0
        offsets = np.concatenate([[0], np.cumsum(kept.sum(axis=1))]).astype(np.int64)
        values = pl.Series(self.item_ids.to_external(padded[kept]).tolist(), dtype=self._item_dtype())
        lists = pa.LargeListArray.from_arrays(pa.array(offsets), values.to_arrow())
        return pl.Series(lists, dtype=pl.List(self._item_dtype()))

    def _user_dtype(self) -> pl.DataType:
        return pl.Series(self.user_ids.external[:1].tolist()).dtype

    def _item_dtype(self) -> pl.DataType:
        return pl.Series(self.item_ids.external[:1].tolist()).dtype

    # -- the seam for other pipelines ------------------------------------------------------
    def score(
        self, candidates: pl.DataFrame, *, history: pl.DataFrame | None = None, control: Control | None = None,
    ) -> pl.DataFrame:
        """Score and explain `user_id, item_id` rows from any upstream retriever (external ids):
        the rows in their order with score, persona, persona_label, persona_weight and
        score_share added. Users unknown to the model are an error unless `history` holds
        their interactions (they are folded in). Rank by `score` to rerank."""
        return self._pairs(candidates, history, control, with_support=False)

    def explain_many(
        self, pairs: pl.DataFrame, *, history: pl.DataFrame | None = None, control: Control | None = None,
    ) -> pl.DataFrame:
        """`score` plus because_you_liked for many `user_id, item_id` pairs at once."""
        return self._pairs(pairs, history, control, with_support=True)

    def _pairs(
        self, pairs: pl.DataFrame, history: pl.DataFrame | None, control: Control | None, with_support: bool,
    ) -> pl.DataFrame:
        user_rows, items = self._check_pairs(pairs)
        users = list(dict.fromkeys(pairs["user_id"].to_list()))
        batch = self.user_batch(users, history)
        position = {user: index for index, user in enumerate(users)}
        user_index = np.array([position[user] for user in user_rows], np.int64)
        slot = np.zeros(len(user_index), np.int64)  # each pair's column in its user's padded row
        counts = np.zeros(len(users), np.int64)
        for row, user in enumerate(user_index):
            slot[row], counts[user] = counts[user], counts[user] + 1
        padded = np.full((len(users), int(counts.max())), -1, np.int64)
        padded[user_index, slot] = items
        described = self.explainer.describe(batch.state)
        weights = self.explainer.control_weights(batch.state, control, described)
        if with_support:
            explained, _ = self.explainer.explain(batch.state, batch.histories, padded, weights, described)
            parts = explained
        else:
            parts = self.model.scorer.terms(batch.state, np.maximum(padded, 0), weights)
        attention, shares, scores = parts.attention, parts.shares, parts.scores
        persona = parts.persona[user_index, slot]  # the explaining persona, by the scorer's one rule
        columns = {
            "score": scores[user_index, slot].astype(np.float32),
            "persona": persona.astype(np.int32),
            "persona_label": pl.Series([described[user][m].label for user, m in zip(user_index, persona)], dtype=pl.String),
            "persona_weight": attention[user_index, persona, slot].astype(np.float32),
            "score_share": shares[user_index, persona, slot].astype(np.float32),
        }
        if with_support:
            columns["because_you_liked"] = self._item_lists(explained.support[user_index, slot])
        return pairs.select("user_id", "item_id").with_columns(**columns)

    def _check_pairs(self, pairs: pl.DataFrame) -> tuple[list[Any], np.ndarray]:
        """The pairs' user ids and item indices, after checking the frame: a polars frame with
        user_id and item_id of the model's id types, no nulls, no duplicate pair, known items."""
        if not isinstance(pairs, pl.DataFrame):
            raise TypeError(f"candidates must be a polars DataFrame with user_id and item_id, got {type(pairs).__name__}")
        missing = [name for name in ("user_id", "item_id") if name not in pairs.columns]
        if missing:
            raise ValueError(f"candidates need columns user_id and item_id; missing {missing} (has {pairs.columns})")
        if pairs.height == 0:
            raise ValueError("candidates frame is empty")
        for name, expected in (("user_id", self._user_dtype()), ("item_id", self._item_dtype())):
            nulls = np.flatnonzero(pairs[name].is_null().to_numpy())
            if len(nulls):
                raise ValueError(f"candidates have null {name} in rows {nulls[:10].tolist()}")
            if pairs[name].dtype != expected:
                raise TypeError(f"candidates' {name} is {pairs[name].dtype}, the model's ids are {expected}")
        duplicated = np.flatnonzero(pairs.select("user_id", "item_id").is_duplicated().to_numpy())
        if len(duplicated):
            raise ValueError(f"candidates repeat (user_id, item_id) pairs in rows {duplicated[:10].tolist()}")
        item_values = pairs["item_id"].to_numpy()
        unknown = np.flatnonzero(~np.isin(item_values, self.item_ids.external))
        if len(unknown):
            raise UnknownIdError(f"candidates name items the model does not know in rows {unknown[:10].tolist()} "
                                 f"(e.g. {item_values[unknown[0]]!r})")
        return pairs["user_id"].to_list(), self.item_ids.to_index(item_values)

    # -- explanations and control ----------------------------------------------------------
    def _item_names(self, items: np.ndarray) -> list[tuple[Any, str]]:
        """(external id, title) of item indices."""
        titles = self.items["title"].gather(items).to_list() if "title" in self.items.columns else [""] * len(items)
        return list(zip(self.item_ids.to_external(items).tolist(), titles))

    def explain(
        self, user: Any, item: Any, *, history: pl.DataFrame | None = None, unknown_users: UnknownUsers = "error",
        control: Control | None = None,
    ) -> ItemExplanation:
        """Why `item` scores as it does for `user` (both external ids): the persona it satisfies,
        every persona's attention and share of the score, and "because you liked" items."""
        batch = self.user_batch([user], history, unknown_users)
        index = self.item_ids.to_index(item)
        described = self.explainer.describe(batch.state)
        weights = self.explainer.control_weights(batch.state, control, described)
        explained, _ = self.explainer.explain(batch.state, batch.histories, index[None, :], weights, described)
        return ItemExplanation.of(explained, described[0], user, self._item_names)

    def summary(
        self, user: Any, *, history: pl.DataFrame | None = None, unknown_users: UnknownUsers = "error",
        length: SummaryLength = "sentence",
    ) -> str:
        """`user`'s personas by label and weight, at `length` ("clause", "sentence" or "three"
        sentences): the text `state_from_summary` reads back into the same state's summary, so
        what a user reads is what the system can use (explain.summary)."""
        return self.explainer.summaries(self.user_batch([user], history, unknown_users).state, length)[0]

    def state_from_summary(self, text: str | bytes) -> PersonaState:
        """The state a summary (possibly edited: "less Horror", "no Musicals") describes, to serve
        with `recommend(..., states=)` (explain.summary_parser; SummaryError on bad text)."""
        if self.explainer.vocabulary is None:
            raise ValueError("this model's training data gave no summary vocabulary: summaries cannot be read back")
        return state_from_summary(text, self.explainer.vocabulary, self.model.config.n_personas)

    def personas(
        self, user: Any, *, history: pl.DataFrame | None = None, unknown_users: UnknownUsers = "error",
        states: PersonaState | None = None,
    ) -> pl.DataFrame:
        """`user`'s personas: persona, label, strongest bases and the persona's own top items
        (titles: what that persona predicts, not what the user liked)."""
        described = self.explainer.describe(self.user_batch([user], history, unknown_users, states).state)[0]
        return pl.DataFrame({
            "persona": [persona.persona for persona in described],
            "label": [persona.label for persona in described],
            "bases": [", ".join(f"{k} {name} ({strength:+.2f})" for k, strength, name in persona.bases)
                      for persona in described],
            "top_items": [[title for _, title in self._item_names(np.array(persona.top_items[:5]))]
                          for persona in described],
        })

    # -- persistence -----------------------------------------------------------------------
    def save(self, directory: Path) -> Path:
        """Write the artifact directory atomically: the model's own arrays and metadata
        (`Recommender.artifact_meta`) beside the ids, item metadata, training histories, the
        population prior and the candidate index (safetensors and JSON, no pickle)."""
        arrays = {f"{MODEL_PREFIX}{name}": value for name, value in self.model._arrays().items()}
        arrays |= csr_arrays("histories", self.histories) | csr_arrays("seen", self.seen) | {
            "population.coefficients": self.population_state.coefficients,
            "population.prior_logits": self.population_state.prior_logits,
        }
        meta = {
            "dataset": self.dataset_name,
            "model": {"kind": self.model.name} | self.model.artifact_meta(),
            "user_ids": self.user_ids.to_list(),
            "item_ids": self.item_ids.to_list(),
            "items": self.items.to_dicts(),
        }
        index = self.retriever.index if self.retriever.uses_index else self.retriever.built_index
        meta["retrieval"] = {"config": asdict(self.retrieval), "index": index.metadata() if index else None}
        files = {INDEX_FILE: index.to_bytes()} if index else {}
        return save_artifact(Path(directory), ARTIFACT_KIND, arrays, meta, files)

    @classmethod
    def load(cls, directory: Path) -> "PersonaPipeline":
        """Read an artifact written by `save`; raises ArtifactError naming any problem."""
        artifact = load_artifact(Path(directory), expected_kind=ARTIFACT_KIND)
        meta, arrays = artifact.meta, artifact.arrays
        try:
            stored = meta["model"]
            model_arrays = {name.removeprefix(MODEL_PREFIX): value for name, value in arrays.items()
                            if name.startswith(MODEL_PREFIX)}
            model = PersonaRecommender.from_artifact(stored["kind"], model_arrays, stored, str(directory))
            user_ids, item_ids = IdMap(np.array(meta["user_ids"]), "user"), IdMap(np.array(meta["item_ids"]), "item")
            histories = csr_from_arrays(arrays, "histories", (len(user_ids), len(item_ids)))
            seen = csr_from_arrays(arrays, "seen", (len(user_ids), len(item_ids)))
            population = PersonaState(arrays["population.coefficients"], arrays["population.prior_logits"])
            items = pl.DataFrame(meta["items"]) if meta["items"] else pl.DataFrame({"item_id": meta["item_ids"]})
            retrieval = meta.get("retrieval") or {}
            dataset_name = meta["dataset"]
            _check_loaded(model, items, histories, seen, population, retrieval)
        except (KeyError, TypeError, ValueError, pl.exceptions.PolarsError) as error:
            if isinstance(error, ArtifactError):
                raise
            raise ArtifactError(f"artifact at {directory} does not match this version of recsys_pref: "
                                f"{type(error).__name__}: {error}") from error
        index = None
        if INDEX_FILE in artifact.files:  # refused (IndexMismatchError) unless built from this model's items
            shared = model.shared
            index = CandidateIndex.from_bytes(artifact.files[INDEX_FILE], retrieval.get("index") or {},
                                              shared.item_embeddings, shared.item_bias)
        return cls(model, user_ids, item_ids, items, histories, seen, population, dataset_name,
                   retrieval_config_from_dict(retrieval.get("config") or {}), index)


def _check_loaded(
    model: PersonaRecommender, items: pl.DataFrame, histories: sp.csr_matrix, seen: sp.csr_matrix,
    population: PersonaState, retrieval: Any,
) -> None:
    """ValueError unless a loaded artifact's parts agree: one item count everywhere (model,
    shared side, id map, metadata), one user count (histories, seen), the population state of
    shape (1, M, K), and the retrieval metadata a mapping."""
    shared, n_items = model.shared, model.n_items
    counts = {"item embeddings": shared.item_embeddings.shape[0], "item biases": shared.item_bias.shape[0],
              "item metadata rows": items.height, "histories' columns": histories.shape[1],
              "seen items' columns": seen.shape[1]}
    wrong = {name: count for name, count in counts.items() if count != n_items}
    if wrong:
        raise ValueError(f"the model has {n_items} items but " + ", ".join(f"{name} {n}" for name, n in wrong.items()))
    if histories.shape != seen.shape:
        raise ValueError(f"histories {histories.shape} and seen items {seen.shape} differ")
    expected = (1, model.config.n_personas, shared.n_bases)
    if population.coefficients.shape != expected or population.prior_logits.shape != expected[:2]:
        raise ValueError(f"population state has shapes {population.coefficients.shape} and "
                         f"{population.prior_logits.shape}, expected {expected} and {expected[:2]}")
    if not isinstance(retrieval, dict):
        raise ValueError(f"retrieval metadata must be a mapping, got {type(retrieval).__name__}")


def _user_list(users: pl.DataFrame | pl.Series | Sequence[Any]) -> list[Any]:
    """Users as a list of external ids, from a frame with a user_id column, a series or a sequence."""
    if isinstance(users, pl.DataFrame):
        if "user_id" not in users.columns:
            raise ValueError(f"users frame needs a user_id column; it has {users.columns}")
        return users["user_id"].to_list()
    if isinstance(users, pl.Series):
        return users.to_list()
    if isinstance(users, (str, bytes)) or np.ndim(users) == 0:
        return [users]
    return list(users)
