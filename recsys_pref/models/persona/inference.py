"""Exact persona inference: each persona's coefficients solved against the frozen shared side.

The user state is the minimiser of one objective, a mixture of regressions with shared
negatives (Hu, Koren & Volinsky's implicit-feedback least squares, one regression per
persona). For a user u with history H (weights x_ui > 0), item rewards r_i = P e_i (K,),
confidences w_i = alpha x_ui (implicit's convention: a positive's confidence is alpha times
its weight, every other item has confidence 1 and target 0), personas c_m (K,) and weights pi:

    F(c, pi) = - sum_{i in H} log sum_m pi_m N(1 | rho_m(i), 1 / (beta w_i))
               + (beta / 2) sum_m [ sum_{i not in H} rho_m(i)^2 + lambda |c_m|^2 ]
               - delta sum_m log pi_m,                      rho_m(i) = <c_m, r_i>

Every persona must explain the items the user never touched (shared negatives); each history
item is explained by the persona that fits it best. EM decreases F monotonically:

    E-step   gamma_mi ∝ pi_m exp(-beta w_i (1 - rho_m(i))^2 / 2)               (m = 1..M)
    M-step   pi_m = (sum_i gamma_mi + delta) / (|H| + M delta)
             A_m = G + lambda I + sum_{i in H} (w_i gamma_mi - 1) r_i r_i^T,   G = sum_all r_i r_i^T
             b_m = sum_{i in H} w_i gamma_mi r_i,                              c_m = A_m^{-1} b_m

For M = 1 (gamma = 1) the M-step is exactly implicit's ALS user step
(Y^T Y + Y^T (C_u - I) Y + lambda I) x_u = Y^T C_u p_u, so with K = d orthonormal bases the
state is a rotation of implicit's `recalculate_user` factors. A_m is G restricted to the
non-history items plus a non-negative weighted Gram plus lambda I: symmetric positive definite.

Initialisation for M > 1 is deterministic: the first seed is the history item the M = 1
solution likes most, each next seed the history item farthest (in cosine) from the seeds
chosen so far; responsibilities start as a hard assignment of each history item to its
nearest seed (by cosine of rewards), and EM starts with an M-step. The prior logits of the
state are log pi (they enter the scorer's attention as pi_um).

Everything is batched over users: users are sorted by history length and taken in chunks of
at most `CHUNK_CELLS` (user, history item) cells, padded to the chunk's longest history, so
memory is bounded by CHUNK_CELLS x M x K floats whatever the catalog and number of users.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

CHUNK_CELLS = 1 << 15  # (user, history item) cells per batch: with M=4, K=64 about 32 MB of float32
MAX_CHUNK_USERS = 4096  # users per batch, whatever their history lengths


@dataclass(frozen=True)
class InferenceSettings:
    """n_personas: M. regularization: lambda (absolute, implicit's convention). alpha: confidence
    per unit of weight. em_iterations: EM steps after the initial M-step (M > 1 only).
    responsibility_scale: beta, how sharply a history item is given to the persona that fits it
    (only the E-step depends on it). pseudocount: delta, keeps every persona's weight pi_m > 0."""

    n_personas: int
    regularization: float
    alpha: float
    em_iterations: int
    responsibility_scale: float = 1.0
    pseudocount: float = 1.0

    def __post_init__(self) -> None:
        if self.n_personas < 1 or self.em_iterations < 0:
            raise ValueError(f"need n_personas >= 1 and em_iterations >= 0, got {self.n_personas}, {self.em_iterations}")
        if not (self.regularization > 0 and self.alpha > 0 and self.responsibility_scale > 0 and self.pseudocount > 0):
            raise ValueError("regularization, alpha, responsibility_scale and pseudocount must be > 0")


@dataclass(frozen=True)
class History:
    """A chunk of users' histories padded to its longest one: items (B, L) int64 (0 where
    padded), confidence (B, L) w_i = alpha x_ui (0 where padded), mask (B, L) bool."""

    items: Tensor
    confidence: Tensor
    mask: Tensor


def history_chunks(user_items: sp.csr_matrix, alpha: float, dtype: torch.dtype
                   ) -> Iterator[tuple[np.ndarray, History]]:
    """(rows, History) chunks of the non-empty rows of `user_items`, shortest histories first."""
    lengths = np.diff(user_items.indptr)
    order = np.argsort(lengths, kind="stable")
    order = order[lengths[order] > 0]
    start = 0
    while start < len(order):
        longest = lengths[order[min(start + MAX_CHUNK_USERS, len(order)) - 1]]
        size = int(min(MAX_CHUNK_USERS, max(1, CHUNK_CELLS // max(longest, 1)), len(order) - start))
        rows = order[start : start + size]
        part = user_items[rows]
        width = int(lengths[rows].max())
        mask = np.arange(width)[None, :] < lengths[rows][:, None]  # (B, L), row-major like CSR
        items = np.zeros(mask.shape, np.int64)
        confidence = np.zeros(mask.shape, np.float64)
        items[mask], confidence[mask] = part.indices, alpha * part.data
        yield rows, History(torch.from_numpy(items), torch.from_numpy(confidence).to(dtype), torch.from_numpy(mask))
        start += size


def weighted_gram(rewards: Tensor, weights: Tensor) -> Tensor:
    """sum_i weights_mi r_i r_i^T: rewards (B, L, K), weights (B, M, L) -> (B, M, K, K)."""
    weighted = rewards[:, None] * weights[..., None]  # (B, M, L, K)
    return weighted.transpose(-1, -2) @ rewards[:, None]


def solve_personas(gram: Tensor, rewards: Tensor, history: History, gamma: Tensor,
                   regularization: float) -> Tensor:
    """The M-step for the coefficients: c_m = A_m^{-1} b_m for every user and persona.

    gram G (K, K); rewards (B, L, K) of the history items; gamma (B, M, L) -> (B, M, K)."""
    weights = history.confidence[:, None, :] * gamma  # (B, M, L): w_i gamma_mi, 0 where padded
    lhs = gram + regularization * torch.eye(gram.shape[0], dtype=gram.dtype)
    lhs = lhs + weighted_gram(rewards, weights - history.mask[:, None, :].to(gram.dtype))  # (B, M, K, K)
    rhs = (weights @ rewards)[..., None]  # (B, M, K, 1)
    factor, info = torch.linalg.cholesky_ex(lhs)
    if bool((info > 0).any()):  # only in pathological float32 cases; the general solver still works
        return torch.linalg.solve(lhs, rhs)[..., 0]
    return torch.cholesky_solve(rhs, factor)[..., 0]


def responsibilities(coefficients: Tensor, log_weights: Tensor, rewards: Tensor, history: History,
                     scale: float) -> Tensor:
    """The E-step: gamma_mi = softmax_m(log pi_m - beta w_i (1 - rho_m(i))^2 / 2), (B, M, L),
    zero on padded cells. coefficients (B, M, K), log_weights (B, M), rewards (B, L, K)."""
    rho = coefficients @ rewards.transpose(1, 2)  # (B, M, L)
    logits = log_weights[..., None] - 0.5 * scale * history.confidence[:, None, :] * (1 - rho) ** 2
    return torch.softmax(logits, dim=1) * history.mask[:, None, :]


def persona_weights(gamma: Tensor, history: History, pseudocount: float) -> Tensor:
    """The M-step for pi: log((sum_i gamma_mi + delta) / (|H| + M delta)), (B, M)."""
    counts = gamma.sum(dim=2) + pseudocount  # (B, M)
    return torch.log(counts / counts.sum(dim=1, keepdim=True))


def initial_responsibilities(single: Tensor, rewards: Tensor, history: History, n_personas: int) -> Tensor:
    """Hard responsibilities (B, M, L) from deterministic farthest-point seeds (module docstring).

    single (B, K): the M = 1 solution; rewards (B, L, K) of the history items."""
    mask = history.mask
    unit = rewards / rewards.norm(dim=2, keepdim=True).clamp_min(1e-12)  # (B, L, K)
    liking = torch.einsum("bk,blk->bl", single, rewards).masked_fill(~mask, -math.inf)
    seeds = [liking.argmax(dim=1)]  # (B,)
    nearest = torch.full(mask.shape, -math.inf, dtype=rewards.dtype)  # (B, L): best cosine to any seed
    for _ in range(1, n_personas):
        seed_unit = unit[torch.arange(len(unit)), seeds[-1]]  # (B, K)
        nearest = torch.maximum(nearest, torch.einsum("bk,blk->bl", seed_unit, unit))
        seeds.append(nearest.masked_fill(~mask, math.inf).argmin(dim=1))
    seed_units = torch.stack([unit[torch.arange(len(unit)), seed] for seed in seeds], dim=1)  # (B, M, K)
    closest = (seed_units @ unit.transpose(1, 2)).argmax(dim=1)  # (B, L): first seed wins ties
    gamma = torch.nn.functional.one_hot(closest, n_personas).transpose(1, 2).to(rewards.dtype)
    return gamma * mask[:, None, :]


def solve_chunk(rewards: Tensor, gram: Tensor, history: History, settings: InferenceSettings
                ) -> tuple[Tensor, Tensor]:
    """Coefficients (B, M, K) and prior logits log pi (B, M) of one chunk of users.

    rewards: r for the whole catalog (n_items, K); gram: G = rewards^T rewards (K, K)."""
    item_rewards = rewards[history.items]  # (B, L, K)
    ones = history.mask[:, None, :].to(rewards.dtype)  # gamma = 1: the single-persona solve
    single = solve_personas(gram, item_rewards, history, ones, settings.regularization)  # (B, 1, K)
    if settings.n_personas == 1:
        return single, torch.zeros(single.shape[:2], dtype=rewards.dtype)
    gamma = initial_responsibilities(single[:, 0], item_rewards, history, settings.n_personas)
    for step in range(settings.em_iterations + 1):
        if step:
            gamma = responsibilities(coefficients, log_weights, item_rewards, history, settings.responsibility_scale)
        log_weights = persona_weights(gamma, history, settings.pseudocount)
        coefficients = solve_personas(gram, item_rewards, history, gamma, settings.regularization)
    return coefficients, log_weights


def infer_states(user_items: sp.csr_matrix, rewards: np.ndarray, settings: InferenceSettings,
                 dtype: torch.dtype = torch.float32) -> tuple[np.ndarray, np.ndarray]:
    """Exact states of every row of `user_items` (n, n_items), non-negative weights: coefficients
    (n, M, K) and prior logits (n, M), float32 numpy. Rows with an empty history get zero
    coefficients and uniform logits (the callers decide what an empty history means).

    rewards: r(i) = P e_i for the catalog (n_items, K); computed in `dtype` (float64 for tests)."""
    matrix = sp.csr_matrix(user_items, copy=True)
    matrix.eliminate_zeros()  # a stored zero weight is no evidence: not part of the history
    table = torch.from_numpy(np.asarray(rewards)).to(dtype)
    gram = table.T @ table  # (K, K)
    n, (_, n_bases) = matrix.shape[0], table.shape
    coefficients = np.zeros((n, settings.n_personas, n_bases), np.float32)
    prior_logits = np.full((n, settings.n_personas), -math.log(settings.n_personas), np.float32)
    with torch.no_grad():
        for rows, history in history_chunks(matrix, settings.alpha, dtype):
            part_coefficients, part_logits = solve_chunk(table, gram, history, settings)
            coefficients[rows], prior_logits[rows] = part_coefficients.numpy(), part_logits.numpy()
    return coefficients, prior_logits


def objective(coefficients: Tensor, log_weights: Tensor, rewards: Tensor, history_items: np.ndarray,
              history_weights: np.ndarray, settings: InferenceSettings) -> Tensor:
    """F(c, pi) of one user (module docstring), differentiable in the coefficients (M, K).

    log_weights (M,) log pi; rewards (n_items, K); history_items (L,) and weights (L,) x_ui > 0."""
    beta, confidence = settings.responsibility_scale, settings.alpha * torch.as_tensor(history_weights, dtype=rewards.dtype)
    own = rewards[torch.as_tensor(history_items)]  # (L, K)
    rho_history = coefficients @ own.T  # (M, L)
    log_density = (0.5 * torch.log(beta * confidence / (2 * math.pi))
                   - 0.5 * beta * confidence * (1 - rho_history) ** 2)  # (M, L)
    fit = -torch.logsumexp(log_weights[:, None] + log_density, dim=0).sum()
    negatives = ((coefficients @ rewards.T) ** 2).sum() - (rho_history**2).sum()
    penalty = 0.5 * beta * (negatives + settings.regularization * (coefficients**2).sum())
    return fit + penalty - settings.pseudocount * log_weights.sum()
