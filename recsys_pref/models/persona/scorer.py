"""The one scorer of the persona family: user states -> scores, persona rewards, attention.

Equations (DESIGN.md, "The model"); items i have embeddings e_i in R^d and biases b_i, the K
shared bases are p_k in R^d, and a user u is M personas with signed coefficients c_um in R^K
and prior logits pi_um:

    r(i)     = P e_i                                   base rewards       (n_items, K)
    rho_um(i) = <c_um, r(i)>                           persona rewards    (B, M, n_items)
    alpha_um(i) = softmax_m(rho_um(i) / tau + pi_um)   attention          (B, M, n_items)
    s(u, i)  = sum_m alpha_um(i) rho_um(i) + b_i       score              (B, n_items)
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Iterator

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from recsys_pref.core.ranking import top_k
from recsys_pref.models.persona.state import PersonaState


def base_rewards(item_embeddings: Tensor, bases: Tensor) -> Tensor:
    """r(i) = P e_i for every item: (n_items, d), (K, d) -> (n_items, K)."""
    return item_embeddings @ bases.T


def persona_rewards(coefficients: Tensor, rewards: Tensor) -> Tensor:
    """rho_um(i) = <c_um, r(i)>.

    coefficients (B, M, K); rewards (n, K) shared by the batch or (B, n, K) per user
    -> (B, M, n).
    """
    if rewards.dim() == 2:
        return torch.einsum("bmk,nk->bmn", coefficients, rewards)
    return torch.einsum("bmk,bnk->bmn", coefficients, rewards)


def persona_attention(rho: Tensor, prior_logits: Tensor, temperature: float) -> Tensor:
    """alpha_um(i) = softmax over m of rho_um(i) / tau + pi_um: (B, M, n), (B, M) -> (B, M, n)."""
    return torch.softmax(rho / temperature + prior_logits[:, :, None], dim=1)


def score_from_state(
    coefficients: Tensor, prior_logits: Tensor, rewards: Tensor, bias: Tensor, temperature: float
) -> tuple[Tensor, Tensor]:
    """s(u, i) = sum_m alpha_um(i) rho_um(i) + b_i, with the attention that produced it.

    coefficients (B, M, K), prior_logits (B, M), rewards (n, K) or (B, n, K), bias (n,) or
    (B, n) -> scores (B, n) and attention (B, M, n).
    """
    rho = persona_rewards(coefficients, rewards)  # (B, M, n)
    alpha = persona_attention(rho, prior_logits, temperature)  # (B, M, n)
    return (alpha * rho).sum(dim=1) + bias, alpha


# -- the scorer -------------------------------------------------------------------------------
SCORE_FLOATS = 1 << 24  # floats per (users x personas x items) block: 64 MB, bounds every batch


@dataclass(frozen=True)
class SharedSide:
    """What scoring needs besides a user's state, float32 numpy: item_embeddings E (n_items, d),
    item_bias b (n_items,), bases P (K, d) and the attention temperature tau (score units)."""

    item_embeddings: np.ndarray
    item_bias: np.ndarray
    bases: np.ndarray
    temperature: float

    def __post_init__(self) -> None:
        for name in ("item_embeddings", "item_bias", "bases"):
            object.__setattr__(self, name, np.ascontiguousarray(getattr(self, name), dtype=np.float32))
        n, d = self.item_embeddings.shape
        if self.item_bias.shape != (n,) or self.bases.ndim != 2 or self.bases.shape[1] != d:
            raise ValueError(f"a shared side needs E (n, d), b (n,), P (K, d); got {self.item_embeddings.shape}, "
                             f"{self.item_bias.shape}, {self.bases.shape}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")

    @property
    def n_items(self) -> int:
        """Items in the catalog."""
        return int(self.item_bias.shape[0])

    @property
    def n_bases(self) -> int:
        """K, the number of shared bases."""
        return int(self.bases.shape[0])

    @cached_property
    def largest_item_norm(self) -> float:
        """max_i |[e_i, b_i]|, computed once: with a query's norm it bounds the magnitude of
        every score term (retrieval's float32 safety margins)."""
        squared = np.einsum("id,id->i", self.item_embeddings, self.item_embeddings) + self.item_bias ** 2
        return float(np.sqrt(squared.max(initial=0.0)))

    @cached_property
    def rewards(self) -> np.ndarray:
        """r(i) = P e_i for every item (n_items, K), computed once."""
        return base_rewards(torch.from_numpy(self.item_embeddings), torch.from_numpy(self.bases)).numpy()


@dataclass(frozen=True)
class ControlWeights:
    """A user's control over their personas and the shared bases, as numbers.

    persona_weights: (n, M) or (M,), >= 0. A weight enters the attention softmax as the extra
        logit log w_um: 0 mutes persona m (zero attention on every item, the others share the
        rest), 1 leaves it alone, 2 doubles its pull against the others.
    base_factors: (n, K) or (K,), >= 0, finite: every persona's coefficient on base k is
        multiplied by f_k (0 removes that direction of taste, 2 doubles it).
    None leaves that part alone. explain.control turns labels into these numbers.
    """

    persona_weights: np.ndarray | None = None
    base_factors: np.ndarray | None = None

    def of_users(self, users: slice | np.ndarray) -> "ControlWeights":
        """The weights of some users: per-user (n, ...) arrays indexed by `users`, shared ones kept."""
        def part(values: np.ndarray | None) -> np.ndarray | None:
            return values if values is None or np.ndim(values) == 1 else np.asarray(values)[users]
        return ControlWeights(part(self.persona_weights), part(self.base_factors))

    def resolved(self, n_users: int, n_personas: int, n_bases: int) -> tuple[np.ndarray, np.ndarray]:
        """log persona weights (n, M) float32 (-inf where muted) and base factors (n, K) float32;
        ValueError on a wrong shape, NaN, a negative value, or a user with every persona muted."""
        weights = _per_user(self.persona_weights, n_users, n_personas, "persona weights")
        factors = _per_user(self.base_factors, n_users, n_bases, "base factors")
        if (weights.sum(axis=1) == 0).any():
            raise ValueError("every persona of a user is muted: at least one must keep a positive weight")
        with np.errstate(divide="ignore"):
            return np.log(weights).astype(np.float32), factors.astype(np.float32)


def _per_user(values: np.ndarray | None, n_users: int, width: int, name: str) -> np.ndarray:
    if values is None:
        return np.ones((n_users, width))
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = np.broadcast_to(values, (n_users, values.shape[0]))
    if values.shape != (n_users, width):
        raise ValueError(f"{name} need shape ({n_users}, {width}) or ({width},), got {values.shape}")
    if not np.isfinite(values).all() or (values < 0).any():
        raise ValueError(f"{name} must be finite and >= 0 (0 mutes)")
    return values


@dataclass(frozen=True)
class ScoreTerms:
    """The parts of s(u, i) for n users and L items each (float32).

    items: (n, L) item indices, or None for the whole catalog (L = n_items);
    rho: (n, M, L) persona rewards; attention: (n, M, L), sums to 1 over M; bias: (n, L) b_i;
    scores: (n, L) = sum_m attention * rho + bias.
    """

    items: np.ndarray | None
    rho: np.ndarray
    attention: np.ndarray
    bias: np.ndarray
    scores: np.ndarray

    @property
    def shares(self) -> np.ndarray:
        """(n, M, L) each persona's part of the score, alpha (rho + b): the bias is shared out by
        attention, so the shares of all personas sum to the score."""
        return self.attention * (self.rho + self.bias[:, None, :])

    @property
    def persona(self) -> np.ndarray:
        """(n, L) the persona each item satisfies: the one with the largest attention."""
        return self.attention.argmax(axis=1)


class PersonaScorer:
    """The only code that turns persona states into scores (DESIGN.md, "One scorer").

    Serving, certified retrieval, explanations, safeguards, onboarding and user control call it
    with states from anywhere (known users, fold-in, onboarding) and optional `ControlWeights`.
    Catalog-wide calls are batched over users so that a block holds at most SCORE_FLOATS floats.
    """

    def __init__(self, shared: SharedSide) -> None:
        self.shared = shared

    def terms(self, state: PersonaState, items: np.ndarray | None = None,
              control: ControlWeights | None = None) -> ScoreTerms:
        """Rewards, attention, bias and scores of the users in `state` for `items` (n, L) item
        indices, or the whole catalog when None."""
        parts = []
        for _, coefficients, logits, item_rewards, item_bias in self._blocks(state, items, control):
            rho = persona_rewards(coefficients, item_rewards)  # (B, M, L)
            parts.append((rho, persona_attention(rho, logits, self.shared.temperature), item_bias))
        rho = torch.cat([part[0] for part in parts]).numpy()
        attention = torch.cat([part[1] for part in parts]).numpy()
        bias = np.ascontiguousarray(torch.cat([part[2] for part in parts]).numpy())
        scores = ((attention * rho).sum(axis=1) + bias).astype(np.float32)
        return ScoreTerms(None if items is None else np.asarray(items, np.int64), rho, attention, bias, scores)

    def scores(self, state: PersonaState, items: np.ndarray | None = None,
               control: ControlWeights | None = None) -> np.ndarray:
        """s(u, i): (n, L) for `items` (n, L), or (n, n_items) for the whole catalog."""
        blocks = [score_from_state(coefficients, logits, item_rewards, item_bias, self.shared.temperature)[0]
                  for _, coefficients, logits, item_rewards, item_bias in self._blocks(state, items, control)]
        return torch.cat(blocks).numpy()

    def persona_scores(self, state: PersonaState, control: ControlWeights | None = None) -> np.ndarray:
        """rho_um(i) + b_i for every item: (n, M, n_items), each persona's own ranking (the score
        if that persona alone held the attention; labels and descriptions use it). Callers
        bound n: the result holds n x M x n_items floats."""
        coefficients, _ = self._effective(state, control)
        rho = persona_rewards(torch.from_numpy(coefficients), torch.from_numpy(self.shared.rewards))
        return (rho + torch.from_numpy(self.shared.item_bias)).numpy()

    def top_k(self, state: PersonaState, k: int, exclude: sp.csr_matrix | None = None,
              control: ControlWeights | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Every item scored, the top k per user: ids (n, k) int64 and scores (n, k) float32,
        padded with -1 / -inf; `exclude` (n, n_items) nonzeros are never returned; ties go to
        the lower item index (core.ranking.top_k)."""
        if exclude is not None and exclude.shape != (len(state), self.shared.n_items):
            raise ValueError(f"exclude has shape {exclude.shape}, expected {(len(state), self.shared.n_items)}")
        ids = np.empty((len(state), k), np.int64)
        values = np.empty((len(state), k), np.float32)
        for rows in self._batches(len(state), state.coefficients.shape[1] * self.shared.n_items):
            part = PersonaState(state.coefficients[rows], state.prior_logits[rows])
            part_control = None if control is None else control.of_users(rows)
            ids[rows], values[rows] = top_k(self.scores(part, None, part_control), k,
                                            exclude=None if exclude is None else exclude[rows])
        return ids, values

    def queries(self, state: PersonaState, control: ControlWeights | None = None) -> np.ndarray:
        """Each persona as a vector in item space, q_um = sum_k c_umk p_k: (n, M, d), so that
        rho_um(i) = <q_um, e_i> (the retrieval queries)."""
        coefficients, _ = self._effective(state, control)
        return coefficients @ self.shared.bases

    def upper_bounds(self, state: PersonaState, items: np.ndarray,
                     control: ControlWeights | None = None) -> np.ndarray:
        """rho_um(i) + b_i for per-persona item lists `items` (n, M, N), -1 for none -> (n, M, N)
        float32, -inf where the id is -1 or persona m is muted. Attention is a convex
        combination over the unmuted personas, so s(u, i) <= max_m of these bounds: the bound
        certified retrieval uses."""
        coefficients, logits = self._effective(state, control)
        items = np.asarray(items)
        if items.ndim != 3 or items.shape[:2] != coefficients.shape[:2]:
            raise ValueError(f"items need shape (n, M, N) = ({len(state)}, {coefficients.shape[1]}, N), got {items.shape}")
        valid = (items >= 0) & np.isfinite(logits)[:, :, None]
        safe = np.where(items >= 0, items, 0)
        values = np.einsum("bmk,bmnk->bmn", coefficients, self.shared.rewards[safe]) + self.shared.item_bias[safe]
        return np.where(valid, values, -np.inf).astype(np.float32)

    # -- helpers ----------------------------------------------------------------------------
    def _effective(self, state: PersonaState, control: ControlWeights | None) -> tuple[np.ndarray, np.ndarray]:
        """Coefficients (n, M, K) with base factors applied and logits (n, M) with log persona weights added."""
        if not isinstance(state, PersonaState):
            raise TypeError(f"expected a PersonaState, got {type(state).__name__}")
        n, n_personas, n_bases = state.coefficients.shape
        if n_bases != self.shared.n_bases:
            raise ValueError(f"state has K = {n_bases} coefficients per persona, the model {self.shared.n_bases} bases")
        if control is None:
            return state.coefficients, state.prior_logits
        log_weights, factors = control.resolved(n, n_personas, n_bases)
        return state.coefficients * factors[:, None, :], state.prior_logits + log_weights

    def _check_items(self, items: np.ndarray | None, n_users: int) -> np.ndarray | None:
        if items is None:
            return None
        items = np.asarray(items)
        if items.ndim != 2 or items.shape[0] != n_users or not np.issubdtype(items.dtype, np.integer):
            raise ValueError(f"items need integer indices of shape ({n_users}, L), got {items.dtype} {items.shape}")
        if items.size and (items.min() < 0 or items.max() >= self.shared.n_items):
            raise ValueError(f"item indices must lie in 0..{self.shared.n_items - 1}")
        return items.astype(np.int64, copy=False)

    def _blocks(self, state: PersonaState, items: np.ndarray | None, control: ControlWeights | None
                ) -> Iterator[tuple[slice, Tensor, Tensor, Tensor, Tensor]]:
        """Yields (rows, coefficients (B, M, K), logits (B, M), item rewards (L, K) or (B, L, K),
        item bias (B, L)) as torch tensors, B users at a time, each block at most SCORE_FLOATS."""
        coefficients, logits = self._effective(state, control)
        items = self._check_items(items, len(state))
        rewards, bias = torch.from_numpy(self.shared.rewards), torch.from_numpy(self.shared.item_bias)
        width = self.shared.n_items if items is None else items.shape[1]
        for rows in self._batches(len(state), coefficients.shape[1] * width):
            block = torch.from_numpy(coefficients[rows])
            if items is None:
                yield rows, block, torch.from_numpy(logits[rows]), rewards, bias.expand(block.shape[0], -1)
            else:
                index = torch.from_numpy(items[rows])
                yield rows, block, torch.from_numpy(logits[rows]), rewards[index], bias[index]

    @staticmethod
    def _batches(n_users: int, floats_per_user: int) -> list[slice]:
        size = max(1, SCORE_FLOATS // max(floats_per_user, 1))
        return [slice(start, start + size) for start in range(0, n_users, size)]
