"""Slates built with the safeguards of a SafeguardsConfig: bounded states, calibrated
re-ranking, exploration slots. With every safeguard off the slate is the model's plain top-k.

Order of work per user: the folded-in state is bounded (models.state_bounds, toward the
model's population prior); the top `candidates` items by score form the pool (from the serving
pipeline's candidate stage, or the whole catalog scored); the first k - round(share * k) slots
are filled from the pool by calibrated re-ranking (or by score when lambda = 0); the remaining
slots are exploration items (safeguards.exploration), marked. Every score comes from the
model's scorer, under the user's control weights when given.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from recsys_pref.data.dataset import InteractionDataset
from recsys_pref.evaluation.beyond_accuracy import item_category_matrix
from recsys_pref.core.ranking import top_k
from recsys_pref.explain.summary import persona_mix
from recsys_pref.models.persona import PersonaRecommender, PersonaState
from recsys_pref.models.persona.scorer import ControlWeights, PersonaScorer
from recsys_pref.models.state_bounds import StateBounds, bound_state
from recsys_pref.safeguards.calibration import base_distributions, calibrated_rerank, history_mix, scaled_relevance
from recsys_pref.safeguards.config import SafeguardsConfig
from recsys_pref.safeguards.exploration import exploration_items


@dataclass(frozen=True)
class Slates:
    """items (n, k) int64, -1 padded; scores (n, k) float32 model scores (-inf for padding);
    exploration (n, k) bool, True for exploration slots; state: the (bounded) states used."""

    items: np.ndarray
    scores: np.ndarray
    exploration: np.ndarray
    state: PersonaState


@dataclass
class SlateBuilder:
    """A fitted persona model with what its safeguards need: item_bases (n_items, K) the items'
    base distributions, item_genres (n_items, G) their genre distributions (None: no genres) and
    item_exposure (n_items,) how often the population has been shown (or has consumed) each item
    lately, which the exposure penalty reads (None: that safeguard cannot be used)."""

    model: PersonaRecommender
    item_bases: np.ndarray
    item_genres: np.ndarray | None
    item_exposure: np.ndarray | None = None

    @property
    def scorer(self) -> PersonaScorer:
        return self.model.scorer

    @property
    def n_items(self) -> int:
        return self.scorer.shared.n_items

    @classmethod
    def for_model(cls, model: PersonaRecommender, genres: list[list[str]] | None = None,
                  item_exposure: np.ndarray | None = None) -> "SlateBuilder":
        """genres: per item its genre names (None or all empty: no genre calibration);
        item_exposure: see the class docstring (e.g. the training interactions per item)."""
        item_genres = None
        if genres is not None and any(genres):
            if len(genres) != model.n_items:
                raise ValueError(f"{len(genres)} items have genres but the model has {model.n_items} items")
            item_genres = item_category_matrix(genres)[0]
        return cls(model, base_distributions(model.shared.rewards), item_genres)._with(item_exposure)

    def with_model(self, model: PersonaRecommender) -> "SlateBuilder":
        """The same genres and exposure with another (for example retrained) model and its base
        distributions."""
        return SlateBuilder(model, base_distributions(model.shared.rewards), self.item_genres, self.item_exposure)

    def with_exposure(self, item_exposure: np.ndarray) -> "SlateBuilder":
        """The same model with the population's current exposure per item (n_items,)."""
        return self._with(item_exposure)

    def _with(self, item_exposure: np.ndarray | None) -> "SlateBuilder":
        if item_exposure is not None:
            item_exposure = np.asarray(item_exposure, np.float64)
            if item_exposure.shape != (self.n_items,) or not np.isfinite(item_exposure).all() or \
                    item_exposure.min() < 0:
                raise ValueError(f"item_exposure must be {self.n_items} finite non-negative counts, "
                                 f"got shape {item_exposure.shape}")
        return SlateBuilder(self.model, self.item_bases, self.item_genres, item_exposure)

    @classmethod
    def for_dataset(cls, model: PersonaRecommender, dataset: InteractionDataset) -> "SlateBuilder":
        genres = dataset.items["genres"].to_list() if "genres" in dataset.items.columns else None
        return cls.for_model(model, genres)

    def bounded(self, state: PersonaState, bounds: StateBounds) -> PersonaState:
        """`state` within `bounds`, shrunk toward the model's population prior state."""
        if not bounds.active:
            return state
        prior = self.model.prior_state()
        with torch.no_grad():
            coefficients, prior_logits = bound_state(
                torch.from_numpy(state.coefficients), torch.from_numpy(state.prior_logits),
                torch.from_numpy(prior.coefficients), torch.from_numpy(prior.prior_logits), bounds)
        return PersonaState(coefficients.numpy(), prior_logits.numpy())

    def build(
        self, state: PersonaState, histories: sp.spmatrix, k: int, config: SafeguardsConfig,
        exclude: sp.spmatrix | None = None, banned_items: np.ndarray | None = None,
        control: ControlWeights | None = None, pool: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> Slates:
        """Slates of size k for users in `state` with (n, n_items) `histories` (the calibration
        and exploration targets); `exclude` (default: the histories) and `banned_items` are
        never recommended. `pool`: each user's candidates (ids (n, N) best first, -1 padded, and
        their scores) from the serving pipeline, computed for the bounded state (`bounded`);
        None scores the whole catalog. `control`: the user's mute/boost weights."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        histories = sp.csr_matrix(histories)
        if histories.shape != (len(state), self.n_items):
            raise ValueError(f"histories have shape {histories.shape}, expected {(len(state), self.n_items)}")
        exclude = histories if exclude is None else sp.csr_matrix(exclude)
        state = self.bounded(state, config.state_bounds)
        n_explore = int(round(config.exploration_share * k))
        n_ranked = k - n_explore
        reranked = config.exposure_penalty > 0 or (config.calibration_lambda > 0 and n_ranked > 0)
        if pool is None:  # without a re-ranker the slate is the top n_ranked: a larger pool is unused
            pool = self._pool(state, max(config.candidates, k) if reranked else max(n_ranked, 1), exclude,
                              banned_items, control)
        if config.exposure_penalty > 0:
            pool = self._exposure_penalised(pool, config.exposure_penalty)
        if config.calibration_lambda > 0 and n_ranked > 0:
            items = self._calibrated(state, pool, histories, n_ranked, config, control)
        else:
            items = pool[0][:, :n_ranked]
        if n_explore:
            scores = self.scorer.scores(state, control=control)  # (n, n_items): exploration looks past the pool
            taken = exclude + _as_matrix(items, self.n_items)
            n_bases = max(1, int(round(config.exploration_base_share * self.item_bases.shape[1])))
            explored = exploration_items(scores, histories, self.item_bases, n_explore, n_bases,
                                         exclude=taken, banned_items=banned_items)
            items = np.concatenate([items, explored], axis=1)
        flags = np.zeros(items.shape, bool)
        flags[:, n_ranked:] = items[:, n_ranked:] >= 0
        values = self.scorer.scores(state, np.maximum(items, 0), control) if items.shape[1] else \
            np.empty(items.shape, np.float32)
        return Slates(items, np.where(items >= 0, values, -np.inf).astype(np.float32), flags, state)

    def _pool(self, state: PersonaState, size: int, exclude: sp.csr_matrix, banned_items: np.ndarray | None,
              control: ControlWeights | None) -> tuple[np.ndarray, np.ndarray]:
        """Each user's top `size` items by score over the whole catalog (ids, scores)."""
        return top_k(self.scorer.scores(state, control=control), size, exclude=exclude, banned_items=banned_items)

    def _exposure_penalised(self, pool: tuple[np.ndarray, np.ndarray], penalty: float
                            ) -> tuple[np.ndarray, np.ndarray]:
        """The pool re-ordered by relevance - penalty * exposure: relevance is the score min-max
        scaled to [0, 1] per user (calibration.scaled_relevance), exposure the item's share of
        the most exposed item's (in [0, 1]). A population-level term: items everyone is shown
        give way to the user's next best ones (Abdollahpouri et al.'s popularity-aware reranking,
        with exposure for popularity). The returned pool's values are these adjusted relevances."""
        if self.item_exposure is None:
            raise ValueError("exposure_penalty needs the population's item exposure: build the SlateBuilder "
                             "with item_exposure (for_model(..., item_exposure=) or with_exposure)")
        ids, scores = pool
        usable = ids >= 0
        relevance = scaled_relevance(np.where(usable, scores, scores[:, :1]))
        share = self.item_exposure / max(float(self.item_exposure.max()), 1e-12)
        adjusted = np.where(usable, relevance - penalty * share[np.maximum(ids, 0)], -np.inf)
        order = np.argsort(-adjusted, axis=1, kind="stable")
        return np.take_along_axis(ids, order, axis=1), np.take_along_axis(adjusted, order, axis=1)

    def _calibrated(
        self, state: PersonaState, pool: tuple[np.ndarray, np.ndarray], histories: sp.csr_matrix, k: int,
        config: SafeguardsConfig, control: ControlWeights | None,
    ) -> np.ndarray:
        """(n, k) items by Steck's greedy re-ranking of each user's candidate pool."""
        ids, pool_scores = pool
        usable = ids >= 0
        safe_pool = np.maximum(ids, 0)
        relevance = np.where(usable, scaled_relevance(np.where(usable, pool_scores, pool_scores[:, :1])), -np.inf)
        mixes, targets = [], []
        if "personas" in config.calibrate_over:
            terms = self.scorer.terms(state, safe_pool, control)  # the pool is each user's top items
            targets.append(persona_mix(terms))  # (n, M)
            mixes.append(terms.attention.transpose(0, 2, 1))
        for system, distributions in (("bases", self.item_bases), ("genres", self.item_genres)):
            if system in config.calibrate_over and distributions is not None:
                targets.append(history_mix(histories, distributions))
                mixes.append(distributions[safe_pool])
        if not mixes:
            raise ValueError(f"no category system to calibrate over among {config.calibrate_over}")
        positions = calibrated_rerank(relevance, np.concatenate(mixes, axis=2), np.concatenate(targets, axis=1), k,
                                      config.calibration_lambda, config.calibration_alpha)  # (n, k), -1 padded
        if config.calibrated_order == "relevance":
            chosen = np.where(positions >= 0, np.take_along_axis(relevance, np.maximum(positions, 0), axis=1), -np.inf)
            positions = np.take_along_axis(positions, np.argsort(-chosen, axis=1, kind="stable"), axis=1)
        return np.where(positions >= 0, np.take_along_axis(ids, np.maximum(positions, 0), axis=1), -1)


def _as_matrix(items: np.ndarray, n_items: int) -> sp.csr_matrix:
    """(n, L) item ids, -1 padded, as a binary (n, n_items) CSR."""
    rows, columns = np.nonzero(items >= 0)
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, items[rows, columns])), shape=(len(items), n_items))
