"""The persona model with its dataset's ids and metadata: the polars API and the artifact.

`PersonaPipeline.fit(dataset)` trains on the dataset's positives; `recommend(users, k)`
answers in external ids with one tidy frame (user_id, rank, item_id, score, persona,
persona_weight); `save`/`load` round-trip one artifact directory (see models.artifact).

Users never seen in training are folded in when a history is given for them. Without one,
`unknown_users` decides: "error" (default) raises, "population" serves the population prior
(the mean state of the training users, the same prior that onboarding starts from).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import polars as pl
import scipy.sparse as sp
import torch

from recsys_pref.data.dataset import IdMap, InteractionDataset, UnknownIdError
from recsys_pref.core.ranking import top_k
from recsys_pref.explain.control import Control
from recsys_pref.explain.explainer import Explainer, ItemExplanation
from recsys_pref.models.artifact import ArtifactError, load_artifact, save_artifact
from recsys_pref.models.persona import PersonaConfig, PersonaNetwork, PersonaRecommender, PersonaState
from recsys_pref.models.persona.scorer import SharedSide
from recsys_pref.retrieval.index import CandidateIndex
from recsys_pref.retrieval.serving import RetrievalConfig, Retriever, retrieval_config_from_dict
from recsys_pref.safeguards.config import SafeguardsConfig

UnknownUsers = Literal["error", "population"]
ARTIFACT_KIND = "persona-pipeline"
INDEX_FILE = "index.faiss"  # the candidate index inside the artifact directory
RECOMMENDATION_SCHEMA = {
    "user_id": None,  # dtype of the dataset's user ids
    "rank": pl.Int32,
    "item_id": None,
    "score": pl.Float32,
    "persona": pl.Int32,
    "persona_weight": pl.Float32,
}


@dataclass
class PersonaPipeline:
    """model: a fitted PersonaRecommender; histories: (n_users, n_items) training positives of
    the known users, rows in `user_ids` order; population_state: the mean training state."""

    model: PersonaRecommender
    user_ids: IdMap
    item_ids: IdMap
    items: pl.DataFrame
    histories: sp.csr_matrix
    population_state: PersonaState
    dataset_name: str
    retrieval: RetrievalConfig = RetrievalConfig()  # how `recommend` scores (retrieval.serving); read once
    loaded_index: CandidateIndex | None = None  # the artifact's candidate index, else built on first use

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def fit(cls, dataset: InteractionDataset, config: PersonaConfig | None = None) -> "PersonaPipeline":
        """Train the persona model on all of `dataset`'s positives."""
        histories = dataset.to_csr()
        model = PersonaRecommender(config or PersonaConfig()).fit(histories)
        return cls.from_model(model, dataset, histories)

    @classmethod
    def from_model(
        cls, model: PersonaRecommender, dataset: InteractionDataset, histories: sp.csr_matrix
    ) -> "PersonaPipeline":
        """Wrap a model fitted on `histories` (rows = dataset users, columns = dataset items)."""
        if histories.shape != (dataset.n_users, dataset.n_items):
            raise ValueError(f"histories have shape {histories.shape}, the dataset {dataset.n_users, dataset.n_items}")
        active = np.flatnonzero(np.diff(histories.indptr) > 0)
        states = model.fold_in(histories[active])
        population = PersonaState(states.coefficients.mean(0, keepdims=True), states.prior_logits.mean(0, keepdims=True))
        return cls(model, dataset.user_ids, dataset.item_ids, dataset.items, histories, population, dataset.name)

    # -- users' states ---------------------------------------------------------------------
    def user_histories(
        self, users: Sequence[Any], history: pl.DataFrame | None = None, unknown_users: UnknownUsers = "error"
    ) -> tuple[sp.csr_matrix, np.ndarray]:
        """(n, n_items) histories of `users` (known users' training rows plus any rows of
        `history` (user_id, item_id) for them) and a mask of users with no history at all."""
        if unknown_users not in ("error", "population"):
            raise ValueError(f"unknown_users must be 'error' or 'population', got {unknown_users!r}")
        users = list(users)
        if not users:
            raise ValueError("no users given")
        rows = sp.lil_matrix((len(users), len(self.item_ids)), dtype=np.float32)
        for position, user in enumerate(users):
            if user in self.user_ids:
                known_row = self.histories[self.user_ids.to_index(user)[0]]
                rows[position, known_row.indices] = 1.0
        matrix = rows.tocsr()
        if history is not None and history.height:
            missing = {"user_id", "item_id"} - set(history.columns)
            if missing:
                raise ValueError(f"history needs columns user_id and item_id; missing {sorted(missing)}")
            positions = {user: position for position, user in enumerate(users)}
            frame = history.filter(pl.col("user_id").is_in(users))
            extra = sp.csr_matrix(
                (
                    np.ones(frame.height, np.float32),
                    ([positions[user] for user in frame["user_id"].to_list()], self.item_ids.to_index(frame["item_id"].to_numpy())),
                ),
                shape=matrix.shape,
            )
            matrix = (matrix + extra).minimum(1.0).tocsr()
        empty = np.diff(matrix.indptr) == 0
        if empty.any() and unknown_users == "error":
            unknown = [users[i] for i in np.flatnonzero(empty)]
            shown = ", ".join(repr(user) for user in unknown[:5])
            raise UnknownIdError(
                f"no history for user(s) {shown}: pass their interactions as `history`, or "
                "unknown_users='population' to serve the population prior"
            )
        return matrix, empty

    def states(self, histories: sp.csr_matrix, empty: np.ndarray) -> PersonaState:
        """Folded-in states; users with an empty history get the population prior."""
        n = histories.shape[0]
        coefficients = np.repeat(self.population_state.coefficients, n, axis=0)
        prior_logits = np.repeat(self.population_state.prior_logits, n, axis=0)
        if (~empty).any():
            folded = self.model.fold_in(histories[~empty])
            coefficients[~empty], prior_logits[~empty] = folded.coefficients, folded.prior_logits
        return PersonaState(coefficients, prior_logits)

    # -- recommendations -------------------------------------------------------------------
    def recommend(
        self,
        users: pl.DataFrame | pl.Series | Sequence[Any],
        k: int = 10,
        *,
        history: pl.DataFrame | None = None,
        unknown_users: UnknownUsers = "error",
        filter_seen: bool = True,
        safeguards: SafeguardsConfig | None = None,
    ) -> pl.DataFrame:
        """Top-k per user as one frame: user_id, rank (1-based), item_id, score, persona (the
        persona with the largest attention for that item) and persona_weight (that attention),
        persona_label, score_share (that persona's share of the score in score units, the bias
        shared by attention, so all personas' shares sum to the score) and because_you_liked
        (history item ids supporting that persona; see explain.attribution).
        Seen items are never returned: a user with fewer than k unseen items gets fewer rows.
        `safeguards` (safeguards.SafeguardsConfig; None or all off = this plain ranking) builds
        the slate with echo-chamber safeguards and adds an `exploration` column."""
        user_list = _user_list(users)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        histories, state = self._users_state(user_list, history, unknown_users)
        if safeguards is not None and safeguards.active:
            from recsys_pref.safeguards.serving import safeguarded_frame  # it builds on this class

            return safeguarded_frame(self, user_list, histories, state, k, safeguards, filter_seen)
        ids, values = self.retriever.top_k(state, k, histories if filter_seen else None)
        return self._frame(user_list, ids, values, state, histories)

    @cached_property
    def retriever(self) -> Retriever:
        """Top-K of the serving path: exhaustive scoring below `retrieval.min_items` items, the
        certified candidate index from that size on (retrieval.serving)."""
        return Retriever(self.model.shared, self.retrieval, self.loaded_index)

    def _frame(
        self, users: list[Any], ids: np.ndarray, values: np.ndarray, state: PersonaState, histories: sp.csr_matrix,
        control: Control | None = None,
    ) -> pl.DataFrame:
        """One row per recommended item (ids (n, k), -1 = none) with its explanation (see explain)."""
        explained, described = self.explainer.explain(state, histories, ids, control)
        rows, ranks = np.nonzero(ids >= 0)
        items = ids[rows, ranks]
        persona = explained.persona[rows, ranks]
        return pl.DataFrame(
            {
                "user_id": pl.Series([users[row] for row in rows], dtype=self._user_dtype()),
                "rank": (ranks + 1).astype(np.int32),
                "item_id": pl.Series(self.item_ids.to_external(items).tolist(), dtype=self._item_dtype()),
                "score": values[rows, ranks].astype(np.float32),
                "persona": persona.astype(np.int32),
                "persona_weight": explained.attention[rows, persona, ranks].astype(np.float32),
                "persona_label": [described[row][m].label for row, m in zip(rows, persona)],
                "score_share": explained.shares[rows, persona, ranks].astype(np.float32),
                "because_you_liked": pl.Series(
                    [self.item_ids.to_external(np.array(explained.supporting[row][rank], np.int64)).tolist()
                     for row, rank in zip(rows, ranks)],
                    dtype=pl.List(self._item_dtype()),
                ),
            }
        )

    def _user_dtype(self) -> pl.DataType:
        return pl.Series(self.user_ids.external[:1].tolist()).dtype

    def _item_dtype(self) -> pl.DataType:
        return pl.Series(self.item_ids.external[:1].tolist()).dtype

    # -- explanations and control ----------------------------------------------------------
    @cached_property
    def explainer(self) -> Explainer:
        """Base labels, persona descriptions and explanations for this model (explain.explainer)."""
        return Explainer.for_items(self.model, self.items, self.histories)

    def _users_state(
        self, users: Sequence[Any], history: pl.DataFrame | None, unknown_users: UnknownUsers
    ) -> tuple[sp.csr_matrix, PersonaState]:
        histories, empty = self.user_histories(users, history, unknown_users)
        return histories, self.states(histories, empty)

    def _item_names(self, items: np.ndarray) -> list[tuple[Any, str]]:
        """(external id, title) of item indices."""
        titles = self.items["title"].gather(items).to_list() if "title" in self.items.columns else [""] * len(items)
        return list(zip(self.item_ids.to_external(items).tolist(), titles))

    def recommend_adjusted(
        self,
        users: pl.DataFrame | pl.Series | Sequence[Any],
        control: Control,
        k: int = 10,
        *,
        history: pl.DataFrame | None = None,
        unknown_users: UnknownUsers = "error",
        filter_seen: bool = True,
    ) -> pl.DataFrame:
        """`recommend` with personas or bases muted or boosted (see explain.control), in the same
        columns; the explanations describe the adjusted scores. Scores the whole catalog."""
        user_list = _user_list(users)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        histories, state = self._users_state(user_list, history, unknown_users)
        ids, values = top_k(self.explainer.scores(state, control), k, exclude=histories if filter_seen else None)
        return self._frame(user_list, ids, values, state, histories, control)

    def explain(
        self, user: Any, item: Any, *, history: pl.DataFrame | None = None, unknown_users: UnknownUsers = "error"
    ) -> ItemExplanation:
        """Why `item` scores as it does for `user` (both external ids): the persona it satisfies,
        every persona's attention and share of the score, and "because you liked" items."""
        histories, state = self._users_state([user], history, unknown_users)
        index = self.item_ids.to_index(item)
        explained, described = self.explainer.explain(state, histories, index[None, :])
        return ItemExplanation.of(explained, described[0], user, self._item_names)

    def summary(
        self, user: Any, *, history: pl.DataFrame | None = None, unknown_users: UnknownUsers = "error"
    ) -> str:
        """One or two sentences describing `user`'s personas by label and weight (explain.summary)."""
        _, state = self._users_state([user], history, unknown_users)
        return self.explainer.summaries(state)[0]

    def personas(
        self, user: Any, *, history: pl.DataFrame | None = None, unknown_users: UnknownUsers = "error"
    ) -> pl.DataFrame:
        """`user`'s personas: persona, label, strongest bases and top items (titles)."""
        _, state = self._users_state([user], history, unknown_users)
        described = self.explainer.describe(state)[0]
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
        """Write the artifact directory atomically (weights in safetensors, no pickle)."""
        network = self.model._network()
        arrays = {f"network.{name}": value.detach().cpu().numpy() for name, value in network.state_dict().items()}
        arrays |= {
            "histories.indptr": self.histories.indptr.astype(np.int64),
            "histories.indices": self.histories.indices.astype(np.int64),
            "population.coefficients": self.population_state.coefficients,
            "population.prior_logits": self.population_state.prior_logits,
        }
        meta = {
            "dataset": self.dataset_name,
            "config": asdict(self.model.config),
            "preset": self.model.name,
            "shape": [len(self.user_ids), len(self.item_ids)],
            "user_ids": self.user_ids.to_list(),
            "item_ids": self.item_ids.to_list(),
            "items": self.items.to_dicts(),
            "training_summary": self.model.training_summary,
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
            config = PersonaConfig(**meta["config"])
            n_users, n_items = meta["shape"]
            weights = {name.removeprefix("network."): torch.from_numpy(value.copy())
                       for name, value in arrays.items() if name.startswith("network.")}
            seen_in_training = np.zeros(n_items)
            seen_in_training[weights["input_items"].numpy()] = 1  # fixes the encoder's input width
            network = PersonaNetwork(seen_in_training, config)
            network.load_state_dict(weights)
            histories = sp.csr_matrix(
                (np.ones(len(arrays["histories.indices"]), np.float32), arrays["histories.indices"], arrays["histories.indptr"]),
                shape=(n_users, n_items),
            )
            population = PersonaState(arrays["population.coefficients"], arrays["population.prior_logits"])
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise ArtifactError(f"artifact at {directory} does not match this version of recsys_pref: {error}") from error
        model = PersonaRecommender(config)
        model.name = meta["preset"]
        model.network = network.eval()
        model.n_users, model.n_items = n_users, n_items
        model.training_summary = meta.get("training_summary", {})
        items = pl.DataFrame(meta["items"]) if meta["items"] else pl.DataFrame({"item_id": meta["item_ids"]})
        retrieval = meta.get("retrieval") or {}
        index = None
        if INDEX_FILE in artifact.files:  # refused (IndexMismatchError) unless built from this model's items
            index = CandidateIndex.from_bytes(artifact.files[INDEX_FILE], retrieval.get("index") or {},
                                              model.item_embeddings, model.item_bias)
        return cls(
            model,
            IdMap(np.array(meta["user_ids"]), "user"),
            IdMap(np.array(meta["item_ids"]), "item"),
            items,
            histories,
            population,
            meta["dataset"],
            retrieval_config_from_dict(retrieval.get("config") or {}),
            index,
        )


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
