"""Implicit-feedback ALS (Hu, Koren & Volinsky 2008), wrapping implicit.cpu.als.

implicit's confidence model: a positive with weight r has confidence alpha * r, every missing
entry has confidence 1 and preference 0 (so with binary data alpha = 1 weighs positives and
negatives equally; alpha > 1 trusts positives more). implicit >= 0.7 multiplies by alpha itself
in `fit` and in `recalculate_user`, so this wrapper always hands it the raw matrix: scaling here
as well would apply alpha twice.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares

from recsys_pref.models.implicit_factors import ImplicitFactorModel, implicit_threads


@dataclass(frozen=True)
class ALSConfig:
    """factors: latent dimension.
    regularization: L2 penalty lambda on user and item factors (absolute, not scaled by the
        number of interactions; implicit's convention, default 0.01, is far too small for
        binary MovieLens data with factors >= 32).
    alpha: confidence of a positive per unit of weight (negatives have confidence 1); implicit's
        default is 1.0, binary MovieLens-like data usually prefers 1-10.
    iterations: ALS sweeps (each solves all users, then all items; conjugate gradient, 3 steps).
    seed: seeds the random factor initialisation.
    num_threads: implicit's threads (0 = all cores); not a modelling choice.
    """

    factors: int = 64
    regularization: float = 10.0
    alpha: float = 3.0
    iterations: int = 15
    seed: int = 0
    num_threads: int = 0

    def __post_init__(self) -> None:
        if self.factors < 1:
            raise ValueError(f"factors must be >= 1, got {self.factors}")
        if self.regularization < 0:
            raise ValueError(f"regularization must be >= 0, got {self.regularization}")
        if not self.alpha > 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha}")
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        if self.num_threads < 0:
            raise ValueError(f"num_threads must be >= 0, got {self.num_threads}")


#: Tuning grid (at most 8 configurations, the budget every model gets).
GRID: list[dict[str, Any]] = [
    # the best regularization grows with alpha (both scale the data term); on ml-latest-small
    # (strong generalization) reg 10 / alpha 3 and reg 30 / alpha 10 did best at every size
    {"factors": 32, "regularization": 1.0, "alpha": 3.0},
    {"factors": 32, "regularization": 10.0, "alpha": 3.0},
    {"factors": 64, "regularization": 1.0, "alpha": 1.0},
    {"factors": 64, "regularization": 10.0, "alpha": 3.0},
    {"factors": 64, "regularization": 30.0, "alpha": 10.0},
    {"factors": 128, "regularization": 1.0, "alpha": 1.0},
    {"factors": 128, "regularization": 10.0, "alpha": 3.0},
    {"factors": 128, "regularization": 30.0, "alpha": 10.0},
]

class ALS(ImplicitFactorModel):
    """Known users: user_factors[userid] @ item_factors.T.

    New users (fold-in): implicit's `recalculate_user`, the exact least-squares solve of one ALS
    user step against the frozen item factors, with the same alpha as in training (implicit
    applies it). A user with an empty history gets zero factors, hence all-zero scores.
    """

    name: ClassVar[str] = "als"
    config_class: ClassVar[type] = ALSConfig
    grid: ClassVar[list[dict[str, Any]]] = GRID

    model: AlternatingLeastSquares | None = None

    def _implicit_model(self) -> AlternatingLeastSquares:
        c = self.config
        return AlternatingLeastSquares(
            factors=c.factors,
            regularization=c.regularization,
            alpha=c.alpha,
            iterations=c.iterations,
            random_state=c.seed,
            num_threads=c.num_threads,
            dtype=np.float32,
        )

    def fold_in(self, user_items: sp.csr_matrix) -> np.ndarray:
        """Factors (n, factors) of users with histories `user_items`, item factors frozen."""
        assert self.model is not None
        n = user_items.shape[0]
        if n == 0:
            return np.zeros((0, self.config.factors), np.float32)
        with implicit_threads():
            return np.asarray(self.model.recalculate_user(np.arange(n), user_items), dtype=np.float32)
