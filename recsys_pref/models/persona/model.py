"""The persona model behind the `Recommender` interface, and its presets.

Fitting builds the shared side from implicit's ALS (models.persona.factorization: item
embeddings E = ALS item factors, taste bases P; item biases b = 0, or the popularity prior
b_i = eta log(1 + n_i) of models.persona.popularity); a user's state is the exact
solve against that frozen side (models.persona.inference), for known and new users alike, or,
with `inference="encoder"`, an amortized encoder's output (models.persona.encoder). With
`finetune="softmax"` the ALS item side is then fine-tuned through the exact solve under a
softmax (models.persona.finetune) before the bases are rotated. Fit time is ALS's plus the
varimax rotation (and the fine-tune's or the encoder's training when chosen).
"""
from __future__ import annotations

import time
from dataclasses import replace
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch

from recsys_pref.models.base import NotFittedError, Recommender, check_user_items
from recsys_pref.models.persona.config import PersonaConfig
from recsys_pref.models.persona.encoder import SCORE_BATCH, PersonaNetwork, train_network
from recsys_pref.models.persona.factorization import als_item_factors, taste_bases
from recsys_pref.models.persona.finetune import finetuned_item_embeddings
from recsys_pref.models.persona.inference import InferenceSettings, infer_states
from recsys_pref.models.persona.popularity import item_user_counts, popularity_bias
from recsys_pref.models.persona.scorer import PersonaScorer, SharedSide
from recsys_pref.models.persona.state import PersonaState
from recsys_pref.models.state_bounds import bound_state

SHARED_ARRAYS = ("item_embeddings", "item_bias", "bases")
ENCODER_PREFIX = "encoder."


def population_prior(user_items: sp.csr_matrix, rewards: np.ndarray, regularization: float, alpha: float,
                     n_personas: int, unit: bool = False) -> PersonaState:
    """The population prior: every persona is the one state that best fits all training users
    at once (the minimiser of the mean over users of the single-persona objective, itself a
    least-squares problem), with uniform persona weights. (1, M, K) and (1, M); scaled to unit
    length with `unit` (as InferenceSettings.unit_scale scales every user's state).

    The mean of the users' systems is A = G + lambda I + R^T diag((alpha s - n) / U) R and
    b = R^T (alpha s / U), with s_i the summed weight, n_i the users of item i and U users."""
    active = max(int((np.diff(user_items.indptr) > 0).sum()), 1)
    weight = np.asarray(user_items.sum(axis=0), dtype=np.float64).ravel()  # (n_items,)
    users = item_user_counts(user_items)  # (n_items,)
    table = np.asarray(rewards, dtype=np.float64)
    lhs = table.T @ (table * (1 + (alpha * weight - users) / active)[:, None]) + regularization * np.eye(table.shape[1])
    state = np.linalg.solve(lhs, table.T @ (alpha * weight / active))  # (K,)
    if unit:
        state /= max(np.linalg.norm(state), 1e-12)
    coefficients = np.broadcast_to(state, (1, n_personas, len(state)))
    return PersonaState(coefficients, np.full((1, n_personas), -np.log(n_personas)))


class PersonaRecommender(Recommender):
    """The persona model behind the `Recommender` interface.

    Known and new users are scored the same way: their state is inferred from the history rows
    given (`userids` are ignored; a user's state is a function of their history). An empty
    history gets `prior_state()` in `score`, and a ValueError in `fold_in`.
    """

    name: ClassVar[str] = "persona"
    config_class: ClassVar[type | None] = PersonaConfig
    #: Tuning grids (subclasses): at most 8 configurations, the budget every model gets, the
    #: default first, K <= 64.
    grid: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, config: PersonaConfig | None = None, **params: Any) -> None:
        if config is None:
            config = PersonaConfig.preset(type(self).name, **params)
            name = type(self).name
        else:
            config = replace(config, **params) if params else config
            name = config.variant
        super().__init__(config)
        self.name = name  # type: ignore[misc]  # per instance: the preset it was built from
        self.network: PersonaNetwork | None = None  # the encoder (inference = "encoder" only)
        self._shared: SharedSide | None = None
        self._prior: PersonaState | None = None
        self.training_summary: dict[str, float] = {}

    @property
    def state_bytes(self) -> int:
        """Bytes of one user's state in float32: M * (K + 1) * 4."""
        return self.config.state_size * 4

    @property
    def inference_settings(self) -> InferenceSettings:
        """The exact solve's settings (models.persona.inference) from this model's config: unit
        scale for the cosine fine-tune, whose loss normalises the state."""
        c = self.config
        return InferenceSettings(c.n_personas, c.regularization * c.user_regularization_scale, c.alpha,
                                 c.em_iterations, c.responsibility_scale, c.persona_pseudocount,
                                 initial_responsibility_scale=c.initial_responsibility_scale,
                                 unit_scale=c.finetune == "softmax" and c.finetune_cosine)

    # -- fitting and persistence ------------------------------------------------------------
    def _fit(self, user_items: sp.csr_matrix) -> None:
        c = self.config
        started = time.perf_counter()
        summary: dict[str, float] = {}
        if c.finetune == "softmax":
            items, summary = finetuned_item_embeddings(user_items, c, self.inference_settings)
        else:
            items = als_item_factors(user_items, c.embedding_dim, c.regularization, c.alpha, c.als_iterations, c.seed)
        bases = np.eye(c.embedding_dim, dtype=np.float32) if c.identity_bases else taste_bases(items, c.n_bases)
        eta = summary["popularity_prior"] if c.popularity_prior == "auto" else c.popularity_prior
        shared = SharedSide(items, popularity_bias(user_items, eta), bases, c.temperature)
        self.training_summary = {"shared_s": time.perf_counter() - started} | summary
        self.network = None
        if c.inference == "encoder":
            self.network, summary = train_network(user_items, c, shared)
            self.training_summary |= summary
        settings = self.inference_settings
        prior = population_prior(user_items, shared.rewards, settings.regularization, c.alpha, c.n_personas,
                                 settings.unit_scale)  # the same penalty (and scale) as every user's solve
        self._set_fitted(shared, prior)

    def _set_fitted(self, shared: SharedSide, prior: PersonaState) -> None:
        self._shared, self._prior = shared, prior
        self.__dict__.pop("scorer", None)

    def _arrays(self) -> dict[str, np.ndarray]:
        """Everything scoring and fold-in need: the shared side, the population prior and, with
        the encoder, its weights (prefixed "encoder.")."""
        shared, prior = self._fitted()
        arrays = {name: getattr(shared, name) for name in SHARED_ARRAYS}
        arrays |= {"prior_coefficients": prior.coefficients, "prior_logits": prior.prior_logits}
        if self.network is not None:
            arrays |= {ENCODER_PREFIX + name: tensor.numpy().copy() for name, tensor in self.network.state_dict().items()}
        return arrays

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        """Rebuild the fitted model from `_arrays()` (config, n_users and n_items already set)."""
        missing = [name for name in (*SHARED_ARRAYS, "prior_coefficients", "prior_logits") if name not in arrays]
        if missing:
            raise ValueError(f"stored persona model lacks array(s) {missing}")
        shared = SharedSide(*(arrays[name] for name in SHARED_ARRAYS), self.config.temperature)
        self.network = None
        if self.config.inference == "encoder":
            weights = {name[len(ENCODER_PREFIX):]: torch.from_numpy(np.array(value))
                       for name, value in arrays.items() if name.startswith(ENCODER_PREFIX)}
            if "input_items" not in weights:
                raise ValueError("stored persona model has inference='encoder' but no encoder weights")
            item_counts = np.zeros(shared.n_items)
            item_counts[weights["input_items"].numpy()] = 1
            network = PersonaNetwork(item_counts, self.config, shared)
            network.load_state_dict(weights)
            self.network = network.eval()
        self._set_fitted(shared, PersonaState(arrays["prior_coefficients"], arrays["prior_logits"]))

    def _fitted(self) -> tuple[SharedSide, PersonaState]:
        if self._shared is None or self._prior is None:
            raise NotFittedError(f"{self.name} is not fitted: call fit() first")
        return self._shared, self._prior

    # -- scoring ----------------------------------------------------------------------------
    @cached_property
    def scorer(self) -> PersonaScorer:
        """The one scorer over this model's shared side (models.persona.scorer)."""
        return PersonaScorer(self._fitted()[0])

    @property
    def shared(self) -> SharedSide:
        """Item embeddings, biases, bases and temperature: everything but the users."""
        return self.scorer.shared

    def prior_state(self) -> PersonaState:
        """The population prior (1 row), unbounded: what shrinkage pulls toward and the state of
        a user with no history. Exact inference: `population_prior`; encoder: its state for an
        empty history."""
        _, prior = self._fitted()
        if self.network is None:
            return prior
        with torch.no_grad():
            coefficients, prior_logits = self.network.prior_state()
        return PersonaState(coefficients.numpy(), prior_logits.numpy())

    def _score(self, user_items: sp.csr_matrix, userids: np.ndarray | None) -> np.ndarray:
        return self.scorer.scores(self._infer(user_items, bounded=True))

    def fold_in(self, user_items: sp.spmatrix, bounded: bool = True) -> PersonaState:
        """States of users from their histories (n, n_items), shared side frozen: the exact solve
        (or the encoder's pass). Known and new users alike. bounded=False skips the config's
        state bounds (onboarding builds its prior from raw states and bounds every state it
        scores, so the bounds apply once). ValueError on an empty history."""
        self._fitted()
        matrix = check_user_items(user_items, self.n_items).copy()
        matrix.eliminate_zeros()  # a stored zero weight is no evidence
        empty = np.flatnonzero(np.diff(matrix.indptr) == 0)
        if len(empty):
            raise ValueError(f"cannot fold in users with an empty history (rows {empty[:10].tolist()}); "
                             "onboard them with questions instead")
        return self._infer(matrix, bounded)

    def _infer(self, matrix: sp.csr_matrix, bounded: bool) -> PersonaState:
        """States of any history rows; empty rows get the prior state."""
        shared, prior = self._fitted()
        if self.network is not None:
            return self._encode(matrix, bounded)
        coefficients, prior_logits = infer_states(matrix, shared.rewards, self.inference_settings)
        empty = np.asarray((matrix > 0).sum(axis=1)).ravel() == 0  # stored zeros are no history either
        coefficients[empty], prior_logits[empty] = prior.coefficients[0], prior.prior_logits[0]
        bounds = self.config.state_bounds
        if bounded and bounds.active:
            bounded_state = bound_state(torch.from_numpy(coefficients), torch.from_numpy(prior_logits),
                                        torch.from_numpy(prior.coefficients), torch.from_numpy(prior.prior_logits),
                                        bounds)
            coefficients, prior_logits = (part.numpy() for part in bounded_state)
        return PersonaState(coefficients, prior_logits)

    def _encode(self, matrix: sp.csr_matrix, bounded: bool) -> PersonaState:
        """The encoder's states, SCORE_BATCH rows densified at a time (memory bounded by
        SCORE_BATCH x n_items, whatever the number of users)."""
        assert self.network is not None
        parts = []
        with torch.no_grad():
            for start in range(0, matrix.shape[0], SCORE_BATCH):
                history = torch.from_numpy(matrix[start : start + SCORE_BATCH].toarray())
                parts.append(self.network.encode(history, bounded))
        return PersonaState(torch.cat([part[0] for part in parts]).numpy(),
                            torch.cat([part[1] for part in parts]).numpy())


class PersonaModel(PersonaRecommender):
    """The persona model (M personas over K taste bases)."""

    name: ClassVar[str] = "persona"
    grid: ClassVar[list[dict[str, Any]]] = [
        {},
        {"n_bases": 32, "embedding_dim": 32},
        {"user_regularization_scale": 3.0},
        {"n_bases": 32, "embedding_dim": 32, "user_regularization_scale": 3.0},
        {"regularization": 30.0, "alpha": 10.0},
        {"regularization": 30.0, "alpha": 10.0, "user_regularization_scale": 1.0},
        {"n_personas": 3},
        {"n_bases": 32, "embedding_dim": 32, "n_personas": 3},
    ]


class PrefLinear(PersonaRecommender):
    """PReF-linear: one persona, s = <c_u, r(i)> + b_i (with K = d, tuned ALS rotated)."""

    name: ClassVar[str] = "pref-linear"
    grid: ClassVar[list[dict[str, Any]]] = [
        {"n_bases": 64},
        {"n_bases": 32},
        {"n_bases": 16},
        {"embedding_dim": 32},
        {"embedding_dim": 128, "n_bases": 64},
        {"n_bases": 64, "regularization": 30.0, "alpha": 10.0},
        {"n_bases": 64, "regularization": 1.0, "alpha": 1.0},
        {"embedding_dim": 128, "n_bases": 64, "regularization": 30.0, "alpha": 10.0},
    ]


class AmpCF(PersonaRecommender):
    """AMP-CF: personas in item space (identity bases, K = d)."""

    name: ClassVar[str] = "amp-cf"
    grid: ClassVar[list[dict[str, Any]]] = [
        {"embedding_dim": 64},
        {"embedding_dim": 32},
        {"embedding_dim": 64, "n_personas": 3},
        {"embedding_dim": 32, "n_personas": 3},
        {"embedding_dim": 64, "temperature": 3.0},
        {"embedding_dim": 64, "temperature": 0.3},
        {"embedding_dim": 64, "regularization": 30.0, "alpha": 10.0},
        {"embedding_dim": 64, "n_personas": 4},
    ]
