"""The persona model behind the `Recommender` interface, and its presets."""
from __future__ import annotations

from dataclasses import replace
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch

from recsys_pref.models.base import NotFittedError, Recommender, check_user_items
from recsys_pref.models.persona.config import PersonaConfig
from recsys_pref.models.persona.encoder import SCORE_BATCH, PersonaNetwork, train_network
from recsys_pref.models.persona.scorer import PersonaScorer, SharedSide
from recsys_pref.models.persona.state import PersonaState


class PersonaRecommender(Recommender):
    """The persona model behind the `Recommender` interface.

    Known and new users are scored the same way: the encoder reads the history rows given
    (`userids` are ignored; a user's state is a function of their history). An empty history
    gets the encoder's state for "nothing seen" (a popularity-like ranking) in `score`, and a
    ValueError in `fold_in`.
    """

    name: ClassVar[str] = "persona"
    config_class: ClassVar[type | None] = PersonaConfig
    #: Tuning grids (subclasses): at most 8 configurations, the budget every model gets, the
    #: default first, K <= 64; drawn from the validation table in `PersonaConfig`.
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
        self.network: PersonaNetwork | None = None
        self.training_summary: dict[str, float] = {}

    @property
    def state_bytes(self) -> int:
        """Bytes of one user's state in float32: M * (K + 1) * 4."""
        return self.config.state_size * 4

    def _fit(self, user_items: sp.csr_matrix) -> None:
        self.network, self.training_summary = train_network(user_items, self.config)
        self.__dict__.pop("scorer", None)

    def _network(self) -> PersonaNetwork:
        if self.network is None:
            raise NotFittedError(f"{self.name} is not fitted: call fit() first")
        return self.network

    @cached_property
    def scorer(self) -> PersonaScorer:
        """The one scorer over this model's shared side (models.persona.scorer)."""
        network = self._network()
        with torch.no_grad():
            shared = SharedSide(network.item_embeddings.numpy().copy(), network.item_bias.numpy().copy(),
                                network.bases.numpy().copy(), network.temperature)
        return PersonaScorer(shared)

    @property
    def shared(self) -> SharedSide:
        """Item embeddings, biases, bases and temperature: everything but the users."""
        return self.scorer.shared

    def prior_state(self) -> PersonaState:
        """The population prior as one state (1, M, K) / (1, M): where shrinkage pulls states
        (models.state_bounds) and onboarding starts. Here: the encoder's state of an empty history."""
        with torch.no_grad():
            coefficients, prior_logits = self._network().prior_state()
        return PersonaState(coefficients.numpy(), prior_logits.numpy())

    def _score(self, user_items: sp.csr_matrix, userids: np.ndarray | None) -> np.ndarray:
        return self.scorer.scores(self._infer(user_items, bounded=True))

    def fold_in(self, user_items: sp.spmatrix, bounded: bool = True) -> PersonaState:
        """States of new users from their histories (n, n_items): one encoder pass, no weight
        changes. bounded=False skips the config's state bounds (onboarding builds its prior
        from raw states and bounds every state it scores, so the bounds apply once)."""
        matrix = check_user_items(user_items, self.n_items)
        empty = np.flatnonzero(np.diff(matrix.indptr) == 0)
        if len(empty):
            raise ValueError(f"cannot fold in users with an empty history (rows {empty[:10].tolist()}); "
                             "onboard them with questions instead")
        return self._infer(matrix, bounded)

    def _infer(self, matrix: sp.csr_matrix, bounded: bool) -> PersonaState:
        """States of any history rows, SCORE_BATCH rows densified at a time (memory bounded by
        SCORE_BATCH x n_items, whatever the number of users)."""
        network = self._network()
        parts = []
        with torch.no_grad():
            for start in range(0, matrix.shape[0], SCORE_BATCH):
                history = torch.from_numpy(matrix[start : start + SCORE_BATCH].toarray())
                parts.append(network.encode(history, bounded))
        return PersonaState(torch.cat([part[0] for part in parts]).numpy(),
                            torch.cat([part[1] for part in parts]).numpy())


class PersonaModel(PersonaRecommender):
    """The persona model (M personas over K learned bases)."""

    name: ClassVar[str] = "persona"
    grid: ClassVar[list[dict[str, Any]]] = [
        {"n_personas": 2, "n_bases": 64},
        {"n_personas": 2, "n_bases": 32},
        {"n_personas": 3, "n_bases": 64},
        {"n_personas": 4, "n_bases": 64},
        {"n_personas": 2, "n_bases": 64, "temperature": 3.0},
        {"n_personas": 2, "n_bases": 64, "temperature": 0.3},
        {"n_personas": 2, "n_bases": 64, "weight_decay": 0.05},
        {"n_personas": 2, "n_bases": 16},
    ]


class PrefLinear(PersonaRecommender):
    """PReF-linear: one persona, s = <c_u, r(i)> + b_i."""

    name: ClassVar[str] = "pref-linear"
    grid: ClassVar[list[dict[str, Any]]] = [
        {"n_bases": 64},
        {"n_bases": 32},
        {"n_bases": 16},
        {"n_bases": 64, "weight_decay": 0.05},
        {"n_bases": 32, "weight_decay": 0.05},
        {"n_bases": 64, "input_dropout": 0.3},
        {"n_bases": 64, "input_dropout": 0.7},
        {"n_bases": 64, "hidden_dim": 200},
    ]


class AmpCF(PersonaRecommender):
    """AMP-CF: personas in item space (identity bases, K = d)."""

    name: ClassVar[str] = "amp-cf"
    grid: ClassVar[list[dict[str, Any]]] = [
        {"embedding_dim": 64},
        {"embedding_dim": 32},
        {"embedding_dim": 16},
        {"embedding_dim": 64, "n_personas": 3},
        {"embedding_dim": 32, "n_personas": 3},
        {"embedding_dim": 64, "temperature": 3.0},
        {"embedding_dim": 64, "temperature": 0.3},
        {"embedding_dim": 64, "weight_decay": 0.05},
    ]
