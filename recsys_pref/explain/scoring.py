"""The persona score taken apart: each persona's reward and attention for chosen items.

    rho_um(i)   = <c_um, r(i)>                                  persona reward
    alpha_um(i) = w_um exp(rho_um(i) / tau + pi_um) / sum_m'(...) attention
    s(u, i)     = sum_m alpha_um(i) rho_um(i) + b_i              score

`persona_weights` w_um >= 0 are the user's control over their personas (DESIGN.md,
"Explanations and summaries"): w = 1 everywhere is the model's own score (the default), w_um
= 0 mutes persona m (its attention is zero for every item and the others are renormalised),
w_um > 1 boosts it. A weight enters the softmax as the additive logit log w_um, so the
equation functions of models.persona are reused unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from recsys_pref.models.persona import PersonaRecommender, PersonaState, base_rewards, persona_attention, persona_rewards

SCORE_BATCH = 256  # users scored at once over the whole catalog: bounds memory at 256 x M x n_items floats


@dataclass(frozen=True)
class PersonaTerms:
    """The parts of s(u, i) for n users and L items each (float32).

    rho: (n, M, L) persona rewards; attention: (n, M, L), sums to 1 over M; bias: (n, L) b_i;
    scores: (n, L) = sum_m attention * rho + bias.
    """

    rho: np.ndarray
    attention: np.ndarray
    bias: np.ndarray
    scores: np.ndarray


def item_rewards(model: PersonaRecommender) -> np.ndarray:
    """r(i) for every item: (n_items, K)."""
    return base_rewards(torch.from_numpy(model.item_embeddings), torch.from_numpy(model.bases)).numpy()


def check_persona_weights(persona_weights: np.ndarray | None, n_users: int, n_personas: int) -> np.ndarray:
    """Persona weights as (n_users, M) float64: None -> ones; (M,) is shared by every user.
    Raises ValueError on a wrong shape, NaN, a negative weight, or a user with every persona muted."""
    if persona_weights is None:
        return np.ones((n_users, n_personas))
    weights = np.asarray(persona_weights, dtype=np.float64)
    if weights.ndim == 1:
        weights = np.broadcast_to(weights, (n_users, weights.shape[0]))
    if weights.shape != (n_users, n_personas):
        raise ValueError(f"persona weights need shape ({n_users}, {n_personas}) or ({n_personas},), got {weights.shape}")
    if not np.isfinite(weights).all() or (weights < 0).any():
        raise ValueError("persona weights must be finite and >= 0 (0 mutes a persona)")
    if (weights.sum(axis=1) == 0).any():
        raise ValueError("every persona of a user is muted: at least one must keep a positive weight")
    return weights


def persona_terms(
    model: PersonaRecommender,
    state: PersonaState,
    items: np.ndarray | None = None,
    persona_weights: np.ndarray | None = None,
) -> PersonaTerms:
    """Rewards, attention, bias and scores of the users in `state` for `items`.

    items: (n, L) item indices per user, or None for the whole catalog (L = n_items).
    persona_weights: (n, M) or (M,) control weights (see the module docstring); None = 1.
    """
    n, n_personas = state.prior_logits.shape
    weights = check_persona_weights(persona_weights, n, n_personas)
    rewards = torch.from_numpy(item_rewards(model))  # (n_items, K)
    bias = model.item_bias  # (n_items,)
    if items is not None:
        items = np.asarray(items, dtype=np.int64)
        if items.ndim != 2 or items.shape[0] != n:
            raise ValueError(f"items need shape ({n}, L), got {items.shape}")
        if items.size and (items.min() < 0 or items.max() >= len(bias)):
            raise ValueError(f"item indices must lie in 0..{len(bias) - 1}")
    with np.errstate(divide="ignore"):
        log_weights = np.log(weights).astype(np.float32)  # log 0 = -inf: zero attention
    parts = []
    for start in range(0, n, SCORE_BATCH):
        batch = slice(start, start + SCORE_BATCH)
        coefficients = torch.from_numpy(state.coefficients[batch])
        item_rows = rewards if items is None else rewards[torch.from_numpy(items[batch])]  # (n_items, K) or (B, L, K)
        rho = persona_rewards(coefficients, item_rows)  # (B, M, L)
        logits = torch.from_numpy(state.prior_logits[batch] + log_weights[batch])
        alpha = persona_attention(rho, logits, model.config.temperature)
        batch_bias = np.broadcast_to(bias, (rho.shape[0], len(bias))) if items is None else bias[items[batch]]
        parts.append((rho.numpy(), alpha.numpy(), batch_bias))
    rho = np.concatenate([part[0] for part in parts])
    attention = np.concatenate([part[1] for part in parts])
    bias_rows = np.ascontiguousarray(np.concatenate([part[2] for part in parts]), dtype=np.float32)
    scores = (attention * rho).sum(axis=1) + bias_rows
    return PersonaTerms(rho, attention, bias_rows, scores.astype(np.float32))
