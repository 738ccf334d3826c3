"""The popularity prior: item biases b_i = eta log(1 + n_i) in the scorer's own units.

n_i is the number of training users with a positive for item i. The scorer adds b_i to every
user's persona rewards (s(u, i) = sum_m alpha_um(i) rho_um(i) + b_i). With the least-squares
states a user whose state is weak (a short history, which the exact solve's ridge shrinks
toward 0) leans on popularity most; the cosine fine-tune's unit-scaled states make rho a
cosine, so there the prior weighs the same against every user's taste. That fine-tune trains
unit item rewards and so removes the popularity that ALS's item norms carry; on gowalla's
validation users a prior chosen there gave it back (BENCHMARKS.md, issue 11).

eta is a number (0 by default: no prior) or "auto": chosen on the fine-tune's validation users
(never test users), by the NDCG@100 of the configured inference, from POPULARITY_PRIORS. The
states do not depend on eta, so they are solved once and every candidate costs only a ranking.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys_pref.core.ranking import top_k
from recsys_pref.models.persona.encoder import SCORE_BATCH
from recsys_pref.models.persona.inference import InferenceSettings, fold_in_scores
from recsys_pref.models.persona.training import VALIDATION_K, VALIDATION_METRIC, ValidationNdcg

#: Candidate eta for "auto" (score units: a positive's least-squares target is 1, a cosine is at
#: most 1): 0, then 0.001 to 0.128 in steps of sqrt(2).
POPULARITY_PRIORS: tuple[float, ...] = (0.0, *(round(0.001 * 2 ** (step / 2), 6) for step in range(15)))


def item_user_counts(user_items: sp.csr_matrix) -> np.ndarray:
    """n_i: users with a positive weight for each item, (n_items,) float64 (stored zeros and
    negative weights are no positives)."""
    return np.bincount(user_items.indices[user_items.data > 0], minlength=user_items.shape[1]).astype(np.float64)


def popularity_bias(user_items: sp.csr_matrix, eta: float) -> np.ndarray:
    """b_i = eta log(1 + n_i) for the items of `user_items` (n_users, n_items): (n_items,) float32."""
    if not eta >= 0:
        raise ValueError(f"the popularity prior eta must be >= 0, got {eta}")
    return (eta * np.log1p(item_user_counts(user_items))).astype(np.float32)


def choose_popularity_prior(rewards: np.ndarray, train: sp.csr_matrix, fold_in: sp.csr_matrix,
                            targets: sp.csr_matrix, settings: InferenceSettings, temperature: float
                            ) -> tuple[float, dict[str, float]]:
    """The eta of POPULARITY_PRIORS with the best validation NDCG@100 (the smallest on ties),
    and a summary: that eta, its validation NDCG@100 and the NDCG@100 without a prior.

    rewards (n_items, K): the item side; train (n_users, n_items): the matrix the item side was
    fitted on (its counts give n_i, without the validation targets); fold_in, targets
    (n_val, n_items): the validation users' histories and held-out items."""
    if fold_in.shape[0] == 0:
        raise ValueError("choosing the popularity prior needs validation users (validation_share > 0)")
    log_counts = np.log1p(item_user_counts(train)).astype(np.float32)  # (n_items,)
    metrics = [ValidationNdcg() for _ in POPULARITY_PRIORS]
    for start in range(0, fold_in.shape[0], SCORE_BATCH):
        history = fold_in[start : start + SCORE_BATCH]
        scores = fold_in_scores(history, rewards, settings, temperature)  # (B, n_items)
        for eta, metric in zip(POPULARITY_PRIORS, metrics):
            recommended, _ = top_k(scores + eta * log_counts, VALIDATION_K, exclude=history)
            metric.add(recommended, targets[start : start + SCORE_BATCH])
    values = [metric.total / max(metric.users, 1) for metric in metrics]
    best = int(np.argmax(values))  # argmax takes the first maximum: the smallest eta
    return POPULARITY_PRIORS[best], {"popularity_prior": POPULARITY_PRIORS[best],
                                     f"popularity_prior_{VALIDATION_METRIC}": values[best],
                                     f"no_popularity_prior_{VALIDATION_METRIC}": values[0]}
