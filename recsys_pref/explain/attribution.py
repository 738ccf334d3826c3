"""Each recommendation traced to the persona it satisfies.

For user u and recommended item i:
- the explaining persona is m* = argmax_m alpha_um(i), the persona with the largest attention
  (DESIGN.md, "Explanations and summaries");
- score shares: s(u, i) = sum_m alpha_um(i) (rho_um(i) + b_i), so persona m's share, in score
  units, is alpha_um(i) (rho_um(i) + b_i). The item bias b_i is shared out in proportion to
  attention (the bias belongs to whichever persona is looking at the item), so the shares of
  all personas sum to the score exactly (up to float rounding), with no separate bias term;
- "because you liked": the user's history items j that most support persona m* for this item,
  ranked by alpha_um*(j) * cos(r(i), r(j)): items the same persona claims in the history
  (attention) that resemble the recommended item in the space of shared bases (cosine of the
  base-reward vectors). Only positive supports are kept.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recsys_pref.models.persona.scorer import ControlWeights, PersonaScorer
from recsys_pref.models.persona.state import PersonaState

N_SUPPORTING = 3


@dataclass(frozen=True)
class RecommendationExplanations:
    """Explanations of n users' recommended items (n, L); entries where items == -1 are padding.

    persona: (n, L) explaining persona; attention: (n, M, L); shares: (n, M, L) each persona's
    share of the score (sums over M to `scores`); scores: (n, L); supporting: per user, per
    item, the supporting history item indices (strongest first).
    """

    items: np.ndarray
    persona: np.ndarray
    attention: np.ndarray
    shares: np.ndarray
    scores: np.ndarray
    supporting: list[list[list[int]]]


def _padded(histories: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Histories as (n, H) item indices padded with 0 and a (n, H) mask of real entries."""
    counts = np.diff(histories.indptr)
    width = max(int(counts.max(initial=0)), 1)
    mask = np.arange(width) < counts[:, None]
    items = np.zeros(mask.shape, np.int64)
    items[mask] = histories.indices
    return items, mask


def explain_recommendations(
    scorer: PersonaScorer,
    state: PersonaState,
    histories: sp.csr_matrix,
    items: np.ndarray,
    control: ControlWeights | None = None,
    n_supporting: int = N_SUPPORTING,
) -> RecommendationExplanations:
    """Explain `items` (n, L; -1 = none) recommended to the users in `state`, whose histories
    are the rows of `histories` (n, n_items). `control`: the weights the items were ranked
    with; None = the model's own score."""
    items = np.asarray(items, dtype=np.int64)
    if histories.shape[0] != len(state) or items.shape[0] != len(state):
        raise ValueError(f"{len(state)} states, {histories.shape[0]} histories and {items.shape[0]} item rows must match")
    present = items >= 0
    terms = scorer.terms(state, np.where(present, items, 0), control)
    persona = terms.persona  # (n, L)
    history_items, history_mask = _padded(sp.csr_matrix(histories))
    history_attention = scorer.terms(state, history_items, control).attention  # (n, M, H)
    rewards = scorer.shared.rewards
    unit = rewards / np.maximum(np.linalg.norm(rewards, axis=1, keepdims=True), 1e-12)
    supporting = []
    for user in range(len(state)):
        held = history_items[user, history_mask[user]]
        similarity = unit[np.where(present[user], items[user], 0)] @ unit[held].T  # (L, H)
        support = history_attention[user][persona[user]][:, : len(held)] * similarity  # (L, H)
        order = np.argsort(-support, axis=1, kind="stable")[:, :n_supporting]
        supporting.append([
            held[row[support[position, row] > 0]].tolist() if present[user, position] else []
            for position, row in enumerate(order)
        ])
    return RecommendationExplanations(items, persona, terms.attention, terms.shares, terms.scores, supporting)
