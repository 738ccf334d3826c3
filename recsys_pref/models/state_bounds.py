"""Bounds on a user's persona state: shrinkage toward a prior state and entropy floors.

A safeguard against echo chambers (DESIGN.md, "Safeguards against echo chambers"): however
much history points one way, a user's state may not become arbitrarily extreme.

    shrinkage s in [0, 1]:   c <- (1 - s) c + s c_prior,   pi <- (1 - s) pi + s pi_prior
    persona entropy floor:   H(softmax(pi_u)) >= h_M log M, by tempering the prior logits
                             (pi <- t pi with the largest t in [0, 1] that meets the floor)
    base entropy floor:      per persona, the base weights w_mk = c_mk^2 / sum_k c_mk^2 must
                             have H(w_m) >= h_K log K, by tempering them (w <- w^t / sum w^t,
                             c_mk <- sign(c_mk) sqrt(w_mk) |c_m|, so signs and |c_m| are kept)

The entropy of softmax(t z) falls monotonically as t grows from 0 (uniform, entropy log n) to
1 (the original weights), so t is found by bisection. It is searched without gradient and then
applied as a constant factor: gradients still reach the state through the tempered values.

This module depends on torch only, so the model (its exact fold-in, toward
`PersonaRecommender.prior_state()`, and the optional encoder's `PersonaNetwork.encode`) and
onboarding's posterior can all apply `bound_state`. Off by default.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

BISECTION_STEPS = 30  # halves [0, 1] to a tempering factor within 1e-9
_EPS = 1e-12


@dataclass(frozen=True)
class StateBounds:
    """shrinkage: s in [0, 1], the pull of each state toward the prior state (0 = none, 1 =
    everyone is the prior). min_persona_entropy, min_base_entropy: floors in [0, 1] on the
    entropy of the persona weights softmax(pi_u) and of each persona's base weights, as a share
    of the maximum (log M, log K); 0 = no floor, 1 = uniform weights. All zero = off."""

    shrinkage: float = 0.0
    min_persona_entropy: float = 0.0
    min_base_entropy: float = 0.0

    def __post_init__(self) -> None:
        for name in ("shrinkage", "min_persona_entropy", "min_base_entropy"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"StateBounds: {name} must lie in [0, 1], got {value}")

    @property
    def active(self) -> bool:
        """Whether any bound changes a state (all zero leaves states bit-identical)."""
        return self.shrinkage > 0 or self.min_persona_entropy > 0 or self.min_base_entropy > 0


def entropy(logits: Tensor) -> Tensor:
    """Entropy in nats of softmax over the last axis: (..., n) -> (...)."""
    log_p = torch.log_softmax(logits, dim=-1)
    return -(log_p.exp() * log_p).sum(dim=-1)


def tempering_factor(logits: Tensor, min_entropy: float) -> Tensor:
    """The largest t in [0, 1] with entropy(softmax(t z)) >= min_entropy (nats), per row:
    (..., n) -> (..., 1). Rows already above the floor get t = 1; found without gradient."""
    with torch.no_grad():
        z = logits.detach()
        low = torch.zeros(z.shape[:-1] + (1,), dtype=z.dtype, device=z.device)
        high = torch.ones_like(low)
        meets = entropy(z) >= min_entropy
        for _ in range(BISECTION_STEPS):
            middle = (low + high) / 2
            above = entropy(middle * z)[..., None] >= min_entropy
            low, high = torch.where(above, middle, low), torch.where(above, high, middle)
        return torch.where(meets[..., None], torch.ones_like(low), low)


def floor_persona_entropy(prior_logits: Tensor, share: float) -> Tensor:
    """Prior logits (B, M) tempered so that H(softmax(pi)) >= share * log M."""
    n_personas = prior_logits.shape[-1]
    if share <= 0 or n_personas < 2:
        return prior_logits
    return prior_logits * tempering_factor(prior_logits, share * math.log(n_personas))


def floor_base_entropy(coefficients: Tensor, share: float) -> Tensor:
    """Coefficients (B, M, K) with each persona's base weights c^2 / |c|^2 tempered so that
    their entropy is >= share * log K; signs and each persona's norm |c_m| are kept.

    Tempered as c_mk (c_mk^2 + eps)^((t - 1) / 2), rescaled to the old norm (weights
    proportional to (c^2)^t, without the infinite slope of |c|^t at c = 0); personas already
    above the floor are returned unchanged."""
    n_bases = coefficients.shape[-1]
    if share <= 0 or n_bases < 2:
        return coefficients
    energy = coefficients.pow(2) + _EPS
    t = tempering_factor(torch.log(energy), share * math.log(n_bases))  # (B, M, 1)
    tempered = coefficients * energy.pow((t - 1) / 2)
    norm = energy.sum(dim=-1, keepdim=True).sqrt()
    tempered = tempered * norm / (tempered.pow(2).sum(dim=-1, keepdim=True) + _EPS).sqrt()
    return torch.where(t < 1, tempered, coefficients)


def bound_state(
    coefficients: Tensor, prior_logits: Tensor, prior_coefficients: Tensor, prior_prior_logits: Tensor,
    bounds: StateBounds,
) -> tuple[Tensor, Tensor]:
    """Apply `bounds` to states: coefficients (B, M, K), prior_logits (B, M), with the prior
    state prior_coefficients (1 or B, M, K), prior_prior_logits (1 or B, M). Shrinkage first,
    then the entropy floors. Inactive bounds return the inputs themselves."""
    if not bounds.active:
        return coefficients, prior_logits
    if bounds.shrinkage > 0:
        s = bounds.shrinkage
        coefficients = (1 - s) * coefficients + s * prior_coefficients
        prior_logits = (1 - s) * prior_logits + s * prior_prior_logits
    return (floor_base_entropy(coefficients, bounds.min_base_entropy),
            floor_persona_entropy(prior_logits, bounds.min_persona_entropy))
