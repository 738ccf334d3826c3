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

Solving: the single-persona state is an exact Cholesky solve per user. For M > 1 every EM
M-step but the last runs `cg_steps` conjugate-gradient steps on A_m c_m = b_m from the previous
c_m, matrix-free (A_m x = (G + lambda I) x + sum_i (w_i gamma_mi - 1) r_i <r_i, x>, O(L K) per
step instead of the O(L K^2) of forming A_m): CG from a warm start never increases the
quadratic, so this generalised EM still never increases F, and it is 5-10x faster. The last
M-step is exact, so every persona's coefficients are the exact weighted least-squares solution
for the final responsibilities (cg_steps = 0: every M-step exact).

An exact solve takes one of two routes, chosen per user by the length L of their own history
(so a user's state never depends on who shares their batch), with the same solution up to
rounding. Long histories (L > KERNEL_LENGTH_PER_BASE K) form A_m and factor it: O(L K^2 + K^3)
per persona. Short ones solve in history space: A_m = B + U D_m U^T with B = G + lambda I the
same for everyone, U = (r_i)_{i in H} (K, L) and D_m = diag(w_i gamma_mi - 1), so with the
whitened rewards q_i = B^{-1} r_i (one (n_items, K) table per call) and S = U^T B^{-1} U (L, L)
(Woodbury; Sylvester's determinant identity makes I + S D_m invertible since A_m is):

    (I + S D_m) y_m = S w gamma_m,      c_m = sum_i (w_i gamma_mi - D_m,i y_m,i) q_i

where y_m = U^T c_m are the persona's rewards of the history items. S is computed once per
user for every solve, and each solve is an (L, L) one: O(L^2 K) once plus O(L^3) per persona.
Measured on this repository's 2-core machine (M = 2, 5 EM steps, random rewards): with K = 64
and 20-item histories the whole fold-in ran 3.6x faster; history space wins up to L = 0.9 K at
K = 32 and beyond L = K at K = 64 (LAPACK factors 64 x 64 matrices slowly), hence the 0.875.

Initialisation for M > 1 is deterministic: the first seed is the history item the M = 1
solution likes most, each next seed the history item farthest (in cosine) from the seeds
chosen so far; responsibilities start as a hard assignment of each history item to its
nearest seed (by cosine of rewards), and EM starts with an M-step. The prior logits of the
state are log pi (they enter the scorer's attention as pi_um).

Annealing: with a large beta the first E-steps would freeze the initial hard split. With
beta_0 set, E-step t uses beta_t = beta_0^(1 - s) beta^s, s = (t - 1) / (T - 2) capped at 1
(T = em_iterations), so the responsibilities start soft and sharpen, and the last two E-steps
use beta itself: the final state is an EM step of F at beta (monotone from the first E-step at
beta on; F itself changes with beta_t before that). On ml-100k validation users (3 seeds, beta
30) annealing from beta_0 = 3 raised NDCG@100 from 0.4444 to 0.4516 at equal faithfulness
(`PersonaConfig` docstring).

Everything is batched over users: users are sorted by history length and taken in chunks of
at most `CHUNK_CELLS` (user, history item) cells, padded to the chunk's longest history, so
memory is bounded by CHUNK_CELLS x M x K floats whatever the catalog and number of users.
Parallelism is over chunks, not inside ops: torch runs single-threaded (`one_torch_thread`)
and as many chunks as torch had threads are solved at once by a thread pool (torch releases
the GIL inside its ops). The tensors of a chunk are small: with 2 OpenMP threads per op on a
busy 2-core machine an elementwise op on 60k floats took 15 ms instead of 25 us (threads
spinning at every op), making the solve 20-40x slower.
"""
from __future__ import annotations

import contextlib
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from recsys_pref.models.persona.scorer import persona_rewards, score_from_state

CHUNK_CELLS = 1 << 15  # (user, history item) cells per batch: with M=4, K=64 about 32 MB of float32
MAX_CHUNK_USERS = 4096  # users per batch, whatever their history lengths
CG_TOLERANCE = 1e-10  # relative residual energy at which a conjugate-gradient system counts as solved
KERNEL_LENGTH_PER_BASE = 0.875  # histories of at most this many items per base are solved in history space


@dataclass(frozen=True)
class InferenceSettings:
    """n_personas: M. regularization: lambda (absolute, implicit's convention). alpha: confidence
    per unit of weight. em_iterations: EM steps after the initial M-step (M > 1 only).
    responsibility_scale: beta, how sharply a history item is given to the persona that fits it
    (only the E-step depends on it). pseudocount: delta, keeps every persona's weight pi_m > 0.
    cg_steps: conjugate-gradient steps of each M-step but the last (0: all exact; module
    docstring). initial_responsibility_scale: beta_0, where the E-steps' beta starts when
    annealed (None: no annealing; `scale_at`). unit_scale: divide each user's final
    coefficients by the norm of their largest persona, so that it is a unit vector (the cosine
    model, whose loss normalises the state: its scores are then cosines, the units of its
    popularity prior). One scale per user keeps the personas' relative sizes: a persona that
    explains no item stays near 0 instead of becoming an arbitrary unit vector."""

    n_personas: int
    regularization: float
    alpha: float
    em_iterations: int
    responsibility_scale: float = 1.0
    pseudocount: float = 1.0
    cg_steps: int = 2
    initial_responsibility_scale: float | None = None
    unit_scale: bool = False

    def __post_init__(self) -> None:
        if self.n_personas < 1 or self.em_iterations < 0 or self.cg_steps < 0:
            raise ValueError(f"need n_personas >= 1, em_iterations >= 0 and cg_steps >= 0, got {self.n_personas}, "
                             f"{self.em_iterations}, {self.cg_steps}")
        if not (self.regularization > 0 and self.alpha > 0 and self.responsibility_scale > 0 and self.pseudocount > 0):
            raise ValueError("regularization, alpha, responsibility_scale and pseudocount must be > 0")
        if self.initial_responsibility_scale is not None and not self.initial_responsibility_scale > 0:
            raise ValueError(f"initial_responsibility_scale must be > 0 or None, got {self.initial_responsibility_scale}")

    def scale_at(self, step: int) -> float:
        """beta of E-step `step` (1 .. em_iterations): geometric from beta_0 to beta over all but
        the last two E-steps, which use beta itself (module docstring); beta throughout when
        beta_0 is None or em_iterations < 3."""
        start, end = self.initial_responsibility_scale, self.responsibility_scale
        if start is None or self.em_iterations < 3:
            return end
        share = min(1.0, (step - 1) / (self.em_iterations - 2))
        return start ** (1 - share) * end**share


@dataclass(frozen=True)
class History:
    """A chunk of users' histories padded to its longest one: items (B, L) int64 (0 where
    padded), confidence (B, L) w_i = alpha x_ui (0 where padded), mask (B, L) bool."""

    items: Tensor
    confidence: Tensor
    mask: Tensor


def history_chunks(user_items: sp.csr_matrix, alpha: float, dtype: torch.dtype, split_after: int | None = None
                   ) -> Iterator[tuple[np.ndarray, History]]:
    """(rows, History) chunks of the non-empty rows of `user_items`, shortest histories first;
    no chunk mixes histories of at most `split_after` items with longer ones."""
    lengths = np.diff(user_items.indptr)
    order = np.argsort(lengths, kind="stable")
    order = order[lengths[order] > 0]
    boundary = len(order) if split_after is None else int(np.searchsorted(lengths[order], split_after, side="right"))
    start = 0
    while start < len(order):
        end = boundary if start < boundary else len(order)
        longest = lengths[order[min(start + MAX_CHUNK_USERS, end) - 1]]
        size = int(min(MAX_CHUNK_USERS, max(1, CHUNK_CELLS // max(longest, 1)), end - start))
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
    """sum_i weights_mi r_i r_i^T: rewards (B, L, K), weights (B, M, L) -> (B, M, K, K).

    One (K, L) x (L, M K) product per user: broadcasting `rewards` over M instead would copy it
    M times, and weighting in (L, M, K) order keeps the elementwise product contiguous (1.3x
    faster than weighting a transposed (M, K, L) copy at L = 50, K = 32, M = 2, one thread)."""
    (batch, personas, length), n_bases = weights.shape, rewards.shape[2]
    weighted = (rewards[:, :, None, :] * weights.transpose(1, 2)[..., None]).reshape(batch, length, personas * n_bases)
    return (rewards.transpose(1, 2) @ weighted).view(batch, n_bases, personas, n_bases).transpose(1, 2)


def solve_personas(gram: Tensor, rewards: Tensor, history: History, gamma: Tensor,
                   regularization: float) -> Tensor:
    """The M-step for the coefficients: c_m = A_m^{-1} b_m for every user and persona.

    gram G (K, K); rewards (B, L, K) of the history items; gamma (B, M, L) -> (B, M, K)."""
    weights = history.confidence[:, None, :] * gamma  # (B, M, L): w_i gamma_mi, 0 where padded
    lhs = weighted_gram(rewards, weights - history.mask[:, None, :].to(gram.dtype))  # (B, M, K, K)
    lhs += gram + regularization * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    rhs = (weights @ rewards)[..., None]  # (B, M, K, 1)
    factor, info = torch.linalg.cholesky_ex(lhs)
    if bool((info > 0).any()):  # only in pathological float32 cases; the general solver still works
        return torch.linalg.solve(lhs, rhs)[..., 0]
    return torch.cholesky_solve(rhs, factor)[..., 0]


def solve_personas_in_history_space(similarity: Tensor, whitened: Tensor, history: History, gamma: Tensor
                                    ) -> Tensor:
    """The same M-step as `solve_personas`, through the (L, L) systems of the module docstring.

    similarity S (B, L, L) = U^T B^{-1} U; whitened (B, L, K) the history items' q_i; gamma
    (B, M, L) -> (B, M, K). Padded cells have w = D = 0, so they never enter a real item's equation."""
    weights = history.confidence[:, None, :] * gamma  # (B, M, L)
    excess = weights - history.mask[:, None, :].to(weights.dtype)  # D_m: w gamma - 1 on the history
    lhs = similarity[:, None] * excess[:, :, None, :]  # (B, M, L, L): S D_m
    lhs.diagonal(dim1=-2, dim2=-1).add_(1.0)
    rhs = weights @ similarity  # (B, M, L): S w gamma_m (S symmetric)
    rho = torch.linalg.solve(lhs, rhs[..., None])[..., 0]  # (B, M, L): y_m
    return (weights - excess * rho) @ whitened


def exact_solver(gram: Tensor, rewards: Tensor, history: History, regularization: float,
                 whitened: Tensor | None) -> Callable[[Tensor], Tensor]:
    """gamma (B, M, L) -> the exact M-step's coefficients (B, M, K) for this chunk: in history
    space when `whitened` (B, L, K) is given, else by factoring A_m (module docstring)."""
    if whitened is None:
        return lambda gamma: solve_personas(gram, rewards, history, gamma, regularization)
    similarity = rewards @ whitened.transpose(1, 2)  # (B, L, L)
    return lambda gamma: solve_personas_in_history_space(similarity, whitened, history, gamma)


def refine_personas(coefficients: Tensor, rho: Tensor, gram: Tensor, rewards: Tensor, history: History,
                    gamma: Tensor, regularization: float, steps: int) -> Tensor:
    """`steps` conjugate-gradient steps on the M-step's systems A_m c_m = b_m from `coefficients`
    (B, M, K), without forming A_m; each step lowers the quadratic c^T A c / 2 - b^T c.
    rho (B, M, L): the coefficients' rewards for the history items (the E-step's, reused)."""
    weights = history.confidence[:, None, :] * gamma  # (B, M, L)
    excess = weights - history.mask[:, None, :].to(gram.dtype)  # w gamma - 1 on the history
    ridge = gram + regularization * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)

    def apply(x: Tensor, x_rho: Tensor | None = None) -> Tensor:  # A_m x for (B, M, K)
        x_rho = x @ rewards.transpose(1, 2) if x_rho is None else x_rho
        return x @ ridge + (excess * x_rho) @ rewards

    return conjugate_gradient(apply, weights @ rewards, coefficients, apply(coefficients, rho), steps)


def conjugate_gradient(apply: Callable[[Tensor], Tensor], rhs: Tensor, x: Tensor, image: Tensor, steps: int
                       ) -> Tensor:
    """`steps` CG steps for apply(x) = rhs over the last axis, batched over the others, from x
    with image = apply(x). A system
    whose residual energy falls below CG_TOLERANCE of |rhs|^2 stops moving (its residual and
    direction are zeroed: the tiny values would otherwise turn subnormal, which costs ~100x on
    CPUs)."""
    floor = CG_TOLERANCE * (rhs * rhs).sum(dim=-1, keepdim=True)
    residual = rhs - image
    energy = (residual * residual).sum(dim=-1, keepdim=True)
    direction = residual
    for _ in range(steps):
        active = energy > floor
        direction = torch.where(active, direction, torch.zeros_like(direction))
        image = apply(direction)
        curvature = (direction * image).sum(dim=-1, keepdim=True)
        step = torch.where(active, energy / curvature.clamp_min(1e-30), torch.zeros_like(energy))
        x = x + step * direction
        residual = torch.where(active, residual - step * image, torch.zeros_like(residual))
        new_energy = (residual * residual).sum(dim=-1, keepdim=True)
        direction = residual + torch.where(active, new_energy / energy.clamp_min(1e-30), torch.zeros_like(energy)) * direction
        energy = new_energy
    return x


def responsibilities(rho: Tensor, log_weights: Tensor, history: History, scale: float) -> Tensor:
    """The E-step: gamma_mi = softmax_m(log pi_m - beta w_i (1 - rho_m(i))^2 / 2), (B, M, L),
    zero on padded cells. rho (B, M, L) persona rewards of the history items, log_weights (B, M)."""
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
    users = torch.arange(len(unit), device=unit.device)
    # (B, L): the best cosine of each history item to any seed so far
    nearest = torch.full(mask.shape, -math.inf, dtype=rewards.dtype, device=rewards.device)
    for _ in range(1, n_personas):
        seed_unit = unit[users, seeds[-1]]  # (B, K)
        nearest = torch.maximum(nearest, torch.einsum("bk,blk->bl", seed_unit, unit))
        seeds.append(nearest.masked_fill(~mask, math.inf).argmin(dim=1))
    seed_units = torch.stack([unit[users, seed] for seed in seeds], dim=1)  # (B, M, K)
    closest = (unit @ seed_units.transpose(1, 2)).argmax(dim=2)  # (B, L): first seed wins ties
    gamma = torch.nn.functional.one_hot(closest, n_personas).transpose(1, 2).to(rewards.dtype)
    return gamma * mask[:, None, :]


def rows_of(table: Tensor, items: Tensor) -> Tensor:
    """table[items] for a table (n_items, K) and ids (B, L) -> (B, L, K); index_select is about
    3x faster than advanced indexing here."""
    return table.index_select(0, items.reshape(-1)).view(*items.shape, table.shape[1])


def em_iterates(rewards: Tensor, gram: Tensor, history: History, settings: InferenceSettings,
                whitened: Tensor | None = None) -> Iterator[tuple[Tensor, Tensor]]:
    """The states (coefficients (B, M, K), prior logits log pi (B, M)) of one chunk of users after
    each M-step, the last one final (module docstring).

    rewards: r for the whole catalog (n_items, K); gram: G = rewards^T rewards (K, K); whitened:
    q = r (G + lambda I)^{-1} for the catalog (n_items, K) to solve in history space, or None."""
    item_rewards = rows_of(rewards, history.items)  # (B, L, K)
    solve_exactly = exact_solver(gram, item_rewards, history, settings.regularization,
                                 None if whitened is None else rows_of(whitened, history.items))
    ones = history.mask[:, None, :].to(rewards.dtype)  # gamma = 1: the single-persona solve
    single = solve_exactly(ones)  # (B, 1, K)
    if settings.n_personas == 1:
        yield single, torch.zeros(single.shape[:2], dtype=rewards.dtype, device=rewards.device)
        return
    gamma = initial_responsibilities(single[:, 0], item_rewards, history, settings.n_personas)
    coefficients = single.expand(-1, settings.n_personas, -1).contiguous()
    for step in range(settings.em_iterations + 1):
        if step:
            rho = persona_rewards(coefficients, item_rewards)  # (B, M, L): the scorer's rho_um(i)
            gamma = responsibilities(rho, log_weights, history, settings.scale_at(step))
        log_weights = persona_weights(gamma, history, settings.pseudocount)
        if step < settings.em_iterations and settings.cg_steps:
            rho = persona_rewards(coefficients, item_rewards) if step == 0 else rho
            coefficients = refine_personas(coefficients, rho, gram, item_rewards, history, gamma,
                                           settings.regularization, settings.cg_steps)
        else:
            coefficients = solve_exactly(gamma)
        yield coefficients, log_weights


@contextlib.contextmanager
def one_torch_thread() -> Iterator[int]:
    """Torch intra-op parallelism off inside the block, restored after; yields the thread count
    it had, which `infer_states` uses as its number of chunk workers (module docstring)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield threads
    finally:
        torch.set_num_threads(threads)


def infer_states(user_items: sp.csr_matrix, rewards: np.ndarray, settings: InferenceSettings,
                 dtype: torch.dtype = torch.float32, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Exact states of every row of `user_items` (n, n_items), non-negative weights: coefficients
    (n, M, K) and prior logits (n, M), float32 numpy. Rows with an empty history get zero
    coefficients and uniform logits (the callers decide what an empty history means).

    rewards: r(i) = P e_i for the catalog (n_items, K); computed in `dtype` (float64 for tests) on
    `device` (a GPU: one chunk at a time there, no thread pool)."""
    matrix = sp.csr_matrix(user_items, copy=True)
    matrix.eliminate_zeros()  # a stored zero weight is no evidence: not part of the history
    table = torch.from_numpy(np.asarray(rewards)).to(device, dtype)
    gram = table.T @ table  # (K, K)
    n, (_, n_bases) = matrix.shape[0], table.shape
    ridge = gram + settings.regularization * torch.eye(n_bases, dtype=dtype, device=table.device)
    whitened = torch.cholesky_solve(table.T, torch.linalg.cholesky(ridge)).T  # (n_items, K): q_i = B^{-1} r_i
    short = int(KERNEL_LENGTH_PER_BASE * n_bases)  # histories this long or shorter: solved in history space
    coefficients = np.zeros((n, settings.n_personas, n_bases), np.float32)
    prior_logits = np.full((n, settings.n_personas), -math.log(settings.n_personas), np.float32)

    def solve(history: History) -> tuple[Tensor, Tensor]:
        history = History(*(part.to(table.device) for part in (history.items, history.confidence, history.mask)))
        with torch.no_grad():  # thread-local: set in the worker
            in_history_space = history.items.shape[1] <= short
            for state in em_iterates(table, gram, history, settings, whitened if in_history_space else None):
                pass  # the last iterate is the state
        if settings.unit_scale:
            largest = state[0].norm(dim=2).amax(dim=1).clamp_min(1e-30)  # (B,)
            state = (state[0] / largest[:, None, None], state[1])
        return state

    chunks = list(history_chunks(matrix, settings.alpha, dtype, split_after=short))
    with one_torch_thread() as workers, ThreadPoolExecutor(workers if table.device.type == "cpu" else 1) as pool:
        for (rows, _), (part_coefficients, part_logits) in zip(chunks, pool.map(solve, [c[1] for c in chunks])):
            coefficients[rows], prior_logits[rows] = part_coefficients.cpu().numpy(), part_logits.cpu().numpy()
    return coefficients, prior_logits


def fold_in_scores(user_items: sp.csr_matrix, rewards: np.ndarray, settings: InferenceSettings, temperature: float
                   ) -> np.ndarray:
    """Scores (n, n_items) of the scorer's equation, item biases 0, for the exact states of the
    rows of `user_items` over `rewards` (n_items, K) float32: what validation ranks while the
    shared side is being chosen (the fine-tune's epochs, the popularity prior's eta)."""
    coefficients, prior_logits = infer_states(user_items, rewards, settings)
    scores, _ = score_from_state(torch.from_numpy(coefficients), torch.from_numpy(prior_logits),
                                 torch.from_numpy(rewards), torch.zeros(len(rewards)), temperature)
    return scores.numpy()


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
