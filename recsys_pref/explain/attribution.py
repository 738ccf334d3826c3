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
SUPPORT_FLOATS = 1 << 24  # floats per block of users ranking supports (B x H x (K + L)): 64 MB


@dataclass(frozen=True)
class RecommendationExplanations:
    """Explanations of n users' recommended items (n, L); entries where items == -1 are padding.

    persona: (n, L) explaining persona; attention: (n, M, L); shares: (n, M, L) each persona's
    share of the score (sums over M to `scores`); scores: (n, L); support: (n, L, S) the
    supporting history item indices per item, strongest first, padded with -1.
    """

    items: np.ndarray
    persona: np.ndarray
    attention: np.ndarray
    shares: np.ndarray
    scores: np.ndarray
    support: np.ndarray

    @property
    def supporting(self) -> list[list[list[int]]]:
        """`support` as lists: per user, per item, the supporting history items."""
        return [[row[row >= 0].tolist() for row in user] for user in self.support]


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
    n_users, width = history_items.shape
    support = np.full((n_users, items.shape[1], n_supporting), -1, np.int64)
    block = max(1, SUPPORT_FLOATS // (width * (unit.shape[1] + items.shape[1])))
    for start in range(0, n_users, block):
        rows = slice(start, start + block)
        held = history_items[rows]  # (B, H)
        similarity = unit[np.where(present[rows], items[rows], 0)] @ unit[held].transpose(0, 2, 1)  # (B, L, H)
        claimed = np.take_along_axis(history_attention[rows], persona[rows][:, :, None], axis=1)  # (B, L, H)
        strength = np.where(history_mask[rows][:, None, :], claimed * similarity, -np.inf)
        order = np.argsort(-strength, axis=2, kind="stable")[:, :, :n_supporting]  # (B, L, S) strongest first
        kept = (np.take_along_axis(strength, order, axis=2) > 0) & present[rows][:, :, None]
        support[rows, :, : order.shape[2]] = np.where(kept, np.take_along_axis(held[:, None, :], order, axis=2), -1)
    return RecommendationExplanations(items, persona, terms.attention, terms.shares, terms.scores, support)
