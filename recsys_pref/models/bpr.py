"""Bayesian Personalized Ranking (Rendle et al. 2009), wrapping implicit.cpu.bpr.

implicit's BPR appends a bias column: item_factors is (n_items, factors + 1) with the item bias
last, and every user vector has a constant 1 in that column, so score = u . v_i + b_i.

BPR has no closed-form user step, so new users are folded in by a ridge regression against the
frozen item factors, the ALS user step with implicit-style confidences (positives alpha, every
other item 1):

    w = argmin_w  sum_i c_i (p_i - b_i - a - v_i . w)^2 + lambda |w|^2
      = (V^T C V + lambda I)^-1 V^T C (p - b - a)

with p the binary history, V / b the frozen item factors / biases and a a free, unpenalised
per-user intercept (it shifts all of a user's scores equally, so it never changes a ranking,
but it absorbs the arbitrary offset of the item biases). The user's bias coordinate stays
fixed to 1 as in training, so a new user is scored like a known one: [w, 1] . [v_i, b_i].

The ridge is a stand-in for BPR's own objective, and its penalty sets how much a new user's
scores lean on the item biases (a popularity order). Measured on ml-latest-small (strong split,
the 121 test users' fold-in histories added to training so the same histories can be scored
both ways, factors 64 / lr 0.01 / reg 0.01): trained users ndcg@10 0.217, this fold-in with the
default fold_in_alpha 30 / fold_in_regularization 100: 0.216 (0.18-0.20 with 128 factors or
other penalties). Minimising BPR's pairwise loss over all (positive, negative) pairs for w with
the items frozen did no better (0.20) at about 100 times the cost.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from implicit.cpu.bpr import BayesianPersonalizedRanking

from recsys_pref.models.implicit_factors import ImplicitFactorModel


@dataclass(frozen=True)
class BPRConfig:
    """factors: latent dimension (implicit adds one more column for the item bias).
    learning_rate: SGD step size.
    regularization: L2 penalty on the factors in each SGD update.
    iterations: epochs (each samples as many (user, positive, negative) triples as there are
        positives).
    seed: seeds initialisation and sampling (with num_threads != 1 the Hogwild updates make
        runs differ slightly even with the same seed).
    fold_in_alpha: confidence of a positive in the new-user ridge regression (other items 1).
    fold_in_regularization: ridge penalty lambda of the new-user regression (units of squared
        residuals summed over the catalog, like ALS's regularization). The defaults were chosen
        on ml-latest-small so that new users score about as well as the same histories scored
        as trained users (see the module docstring); they are not tuned per dataset.
    num_threads: implicit's threads (0 = all cores); not a modelling choice.
    """

    factors: int = 64
    learning_rate: float = 0.01
    regularization: float = 0.01
    iterations: int = 100
    seed: int = 0
    fold_in_alpha: float = 30.0
    fold_in_regularization: float = 100.0
    num_threads: int = 0

    def __post_init__(self) -> None:
        if self.factors < 1:
            raise ValueError(f"factors must be >= 1, got {self.factors}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.regularization < 0:
            raise ValueError(f"regularization must be >= 0, got {self.regularization}")
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        if not self.fold_in_alpha > 0:
            raise ValueError(f"fold_in_alpha must be > 0, got {self.fold_in_alpha}")
        if not self.fold_in_regularization > 0:
            raise ValueError(f"fold_in_regularization must be > 0, got {self.fold_in_regularization}")
        if self.num_threads < 0:
            raise ValueError(f"num_threads must be >= 0, got {self.num_threads}")


#: Tuning grid: factors {64, 128} x learning_rate {0.01, 0.05} x regularization {0.001, 0.01}.
GRID: list[dict[str, Any]] = [
    {"factors": f, "learning_rate": lr, "regularization": reg}
    for f in (64, 128)
    for lr in (0.01, 0.05)
    for reg in (0.001, 0.01)
]


def ridge_fold_in(
    user_items: sp.csr_matrix,
    item_vectors: np.ndarray,
    item_bias: np.ndarray,
    alpha: float,
    regularization: float,
) -> np.ndarray:
    """User vectors w (n, k) solving the confidence-weighted ridge regression in the module
    docstring, for the rows of `user_items` (positives = nonzeros; confidence alpha * weight).

    Works in float64 on the (k + 1)-dimensional system [w, a] per user; the intercept a is
    solved for and dropped.
    """
    V = np.asarray(item_vectors, dtype=np.float64)
    b = np.asarray(item_bias, dtype=np.float64)
    n_items, k = V.shape
    Va = np.hstack([V, np.ones((n_items, 1))])  # last coordinate: the intercept
    penalty = np.full(k + 1, regularization)
    penalty[-1] = 1e-8 * n_items  # (almost) unpenalised intercept, kept nonsingular
    gram = Va.T @ Va + np.diag(penalty)  # every item with confidence 1 ...
    base_rhs = -(Va.T @ b)  # ... and target p - b = -b
    out = np.zeros((user_items.shape[0], k), np.float64)
    X = sp.csr_matrix(user_items)
    for row in range(X.shape[0]):
        start, stop = X.indptr[row], X.indptr[row + 1]
        if start == stop:
            continue  # empty history: w = 0, the user gets the item biases (a popularity order)
        idx = X.indices[start:stop]
        confidence = alpha * X.data[start:stop].astype(np.float64)
        Vp = Va[idx]
        # positives: confidence c instead of 1, target 1 - b_i instead of -b_i
        A = gram + (Vp.T * (confidence - 1.0)) @ Vp
        rhs = base_rhs + Vp.T @ (confidence * (1.0 - b[idx]) + b[idx])
        out[row] = np.linalg.solve(A, rhs)[:k]
    return out


class BPR(ImplicitFactorModel):
    """Known users: [u, 1] . [v_i, b_i] with the trained user vectors. New users: the ridge
    fold-in of the module docstring against the frozen item factors, then scored the same way."""

    name: ClassVar[str] = "bpr"
    config_class: ClassVar[type] = BPRConfig
    grid: ClassVar[list[dict[str, Any]]] = GRID

    model: BayesianPersonalizedRanking | None = None  # user factors (n_users, factors + 1) end
    # in a constant 1, item factors (n_items, factors + 1) in the item bias

    def _implicit_model(self) -> BayesianPersonalizedRanking:
        c = self.config
        return BayesianPersonalizedRanking(
            factors=c.factors,
            learning_rate=c.learning_rate,
            regularization=c.regularization,
            iterations=c.iterations,
            random_state=c.seed,
            num_threads=c.num_threads,
            dtype=np.float32,
            verify_negative_samples=True,
        )

    def fold_in(self, user_items: sp.csr_matrix) -> np.ndarray:
        """User vectors (n, factors + 1) for histories `user_items`, the last coordinate 1."""
        item_factors = self.item_factors
        w = ridge_fold_in(
            user_items,
            item_factors[:, :-1],
            item_factors[:, -1],
            self.config.fold_in_alpha,
            self.config.fold_in_regularization,
        )
        return np.hstack([w, np.ones((w.shape[0], 1))]).astype(np.float32)
