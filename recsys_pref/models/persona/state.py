"""PersonaState: all a user is to the persona model, M * (K + 1) numbers."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PersonaState:
    """Users' states: coefficients (n, M, K) and prior_logits (n, M), float32 numpy.

    It is all a user is to the model (M * (K + 1) numbers); it may come from `fold_in`, from
    onboarding answers or from an edit (a muted persona), as long as the shapes fit the model.
    """

    coefficients: np.ndarray
    prior_logits: np.ndarray

    def __post_init__(self) -> None:
        coefficients = np.asarray(self.coefficients, dtype=np.float32)
        prior_logits = np.asarray(self.prior_logits, dtype=np.float32)
        if coefficients.ndim != 3 or prior_logits.shape != coefficients.shape[:2]:
            raise ValueError(
                f"a persona state needs coefficients (n, M, K) and prior_logits (n, M); got shapes "
                f"{coefficients.shape} and {prior_logits.shape}"
            )
        if not (np.isfinite(coefficients).all() and np.isfinite(prior_logits).all()):
            raise ValueError("persona state contains NaN or infinite values")
        object.__setattr__(self, "coefficients", coefficients)
        object.__setattr__(self, "prior_logits", prior_logits)

    def __len__(self) -> int:
        return self.coefficients.shape[0]

    def vectors(self) -> np.ndarray:
        """(n, M*(K+1)): each user's state as one flat vector (coefficients, then prior logits)."""
        return np.concatenate([self.coefficients.reshape(len(self), -1), self.prior_logits], axis=1)

    @classmethod
    def from_vectors(cls, vectors: np.ndarray, n_personas: int, n_bases: int) -> "PersonaState":
        """Inverse of `vectors` for M = n_personas, K = n_bases."""
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if vectors.shape[1] != n_personas * (n_bases + 1):
            raise ValueError(f"state vectors need {n_personas * (n_bases + 1)} columns, got {vectors.shape[1]}")
        split = n_personas * n_bases
        return cls(vectors[:, :split].reshape(-1, n_personas, n_bases), vectors[:, split:])
