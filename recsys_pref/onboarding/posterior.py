"""A Gaussian (Laplace) posterior over one new user's persona state, every shared weight frozen.

The user state is the flat vector x = (c_u1..c_uM, pi_u1..pi_uM) of M * (K + 1) numbers
(`PersonaState.vectors`). The prior is N(mu, Sigma) fitted to the training users' states (the
encoder's states of every training user). Onboarding works in whitened prior coordinates

    x = mu + W z,   W = U_r diag(sqrt(lambda_r))   (D, r),   prior z ~ N(0, I_r)

with U_r, lambda_r the top r eigenpairs of Sigma (r = D keeps the whole state; a smaller r onboards
in the r-dimensional subspace where training users vary most).

Answers are observations of a multinomial choice among the shown items' scores s(u, i), plus
a "none" option whose utility is

    s_none(u) = logsumexp_i s(u, i) - log(n_known)   over the catalog,

the score at which an item is expected once among a history of n_known items (the persona
model's scores are logits of "this item is in the user's history", so an item chosen over
"none" is one the user is expected to have). For a pair without "none" the choice likelihood is
Bradley-Terry, sigma(s_i - s_j). A tie ("no preference", or "=" on a pair) has the likelihood
exp(mean over shown items of log p(item)), i.e. sqrt(sigma(d) sigma(-d)) for a pair: largest when
the scores are equal. "Don't know" is not an observation.

After each answer the posterior is the Laplace approximation at the MAP of all answers so far:
a few damped Newton steps on 1/2 |z|^2 - sum log p(answer | z), with the generalized
Gauss-Newton (Fisher) Hessian I + sum_a J_a^T (diag p_a - p_a p_a^T) J_a (positive definite;
J_a (n_a, r) the Jacobian of the answer's utilities w.r.t. z, from torch autograd through
`score_from_state`). The covariance is the inverse of that Hessian at the mode.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from recsys_pref.models.persona import PersonaRecommender, PersonaState, score_from_state
from recsys_pref.models.state_bounds import bound_state

NONE = -1  # outcome: "none of these" (choice questions)
TIE = -2  # outcome: "no preference" (pair questions)


@dataclass(frozen=True)
class Observation:
    """One informative answer: `items` were shown (dense indices), `with_none` says whether "none"
    was an option, `outcome` is the position of the chosen item in `items`, NONE or TIE."""

    items: tuple[int, ...]
    with_none: bool
    outcome: int

    def target(self) -> Tensor:
        """(n_items [+ 1],) probabilities the answer puts on the outcomes (one-hot; uniform over
        the shown items for a tie)."""
        n = len(self.items) + int(self.with_none)
        target = torch.zeros(n, dtype=torch.float64)
        if self.outcome == TIE:
            target[: len(self.items)] = 1.0 / len(self.items)
        elif self.outcome == NONE:
            target[-1] = 1.0
        else:
            target[self.outcome] = 1.0
        return target


class StateSpace:
    """The frozen persona model seen as a function of one user's prior coordinates z (r,).

    model: a fitted PersonaRecommender; prior_states: the training users' raw encoder states
    (`fold_in(..., bounded=False)`: the model's state bounds are applied to every state this
    space scores, so they must not be in the prior too), whose mean and covariance make the prior; rank: r (None: the whole state, M * (K + 1)); n_known: items a
    typical user has in their history (the none utility's offset); catalog: (n_items,) bool,
    the items that exist for ranking and the none utility (default: all); ridge: added to the
    prior covariance's eigenvalues (a floor so no direction is certain before any answer).
    """

    def __init__(
        self,
        model: PersonaRecommender,
        prior_states: PersonaState,
        rank: int | None = None,
        n_known: float = 50.0,
        catalog: np.ndarray | None = None,
        ridge: float = 1e-4,
    ) -> None:
        config = model.config
        self.n_personas, self.n_bases, self.temperature = config.n_personas, config.n_bases, config.temperature
        self.dim = config.state_size
        vectors = prior_states.vectors().astype(np.float64)  # (n_users, D)
        if len(vectors) < 2:
            raise ValueError(f"the prior needs the states of at least 2 training users, got {len(vectors)}")
        if rank is not None and not 1 <= rank <= self.dim:
            raise ValueError(f"rank must be in 1..{self.dim} (the state size), got {rank}")
        if not n_known > 0:
            raise ValueError(f"n_known must be > 0, got {n_known}")
        self.rank = self.dim if rank is None else rank
        mean = vectors.mean(axis=0)
        eigenvalues, eigenvectors = np.linalg.eigh(np.cov(vectors, rowvar=False).reshape(self.dim, self.dim))
        order = np.argsort(eigenvalues)[::-1][: self.rank]
        scales = np.sqrt(np.clip(eigenvalues[order], 0.0, None) + ridge)
        self.mean = torch.from_numpy(mean)  # (D,)
        self.basis = torch.from_numpy(eigenvectors[:, order] * scales)  # W (D, r)
        self.scorer = model.scorer  # float32 scoring of persona states (explanations, labels)
        self.rewards = torch.from_numpy(model.shared.rewards).double()  # r(i) (n_items, K), float64 for the Hessian
        self.bias = torch.from_numpy(model.shared.item_bias).double()  # (n_items,)
        self.n_items = len(self.bias)
        self.catalog = np.ones(self.n_items, bool) if catalog is None else np.asarray(catalog, bool)
        if self.catalog.shape != (self.n_items,):
            raise ValueError(f"catalog mask needs shape ({self.n_items},), got {self.catalog.shape}")
        self._catalog_index = torch.from_numpy(np.flatnonzero(self.catalog))
        self.log_known = math.log(n_known)
        self.bounds = config.state_bounds  # the model's safeguards hold for onboarded states too
        prior = model.prior_state()
        self.bound_prior = (torch.from_numpy(prior.coefficients).double(), torch.from_numpy(prior.prior_logits).double())

    # -- states -----------------------------------------------------------------------------
    def full_state(self, z: Tensor) -> Tensor:
        """x = mu + W z: (r,) -> (D,)."""
        return self.mean + self.basis @ z

    def persona_state(self, z: np.ndarray) -> PersonaState:
        """The PersonaState (one user) at coordinates z (r,), within the model's state bounds."""
        coefficients, prior_logits = self._split(self.full_state(torch.as_tensor(z, dtype=torch.float64))[None])
        return PersonaState(coefficients.numpy().astype(np.float32), prior_logits.numpy().astype(np.float32))

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, D) -> coefficients (B, M, K), prior logits (B, M), with the model's state bounds
        (shrinkage, entropy floors; none by default) applied as the encoder applies them."""
        cut = self.n_personas * self.n_bases
        coefficients, prior_logits = x[:, :cut].reshape(-1, self.n_personas, self.n_bases), x[:, cut:]
        return bound_state(coefficients, prior_logits, *self.bound_prior, self.bounds)

    def scores_at(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Scores (B, n_items) and attention (B, M, n_items) at coordinates z (B, r)
        (differentiable)."""
        coefficients, prior_logits = self._split(self.mean[None] + z @ self.basis.T)
        return score_from_state(coefficients, prior_logits, self.rewards, self.bias, self.temperature)

    def catalog_scores(self, z: Tensor) -> Tensor:
        """s(u, i) for every item (n_items,) at z (r,) (differentiable)."""
        return self.scores_at(z[None])[0][0]

    def none_utility(self, z: Tensor) -> Tensor:
        """s_none = logsumexp over the catalog of s(u, i) - log(n_known) (a scalar, differentiable)."""
        return torch.logsumexp(self.catalog_scores(z)[self._catalog_index], dim=0) - self.log_known

    # -- utilities and their Jacobians -----------------------------------------------------
    def utilities(self, z: Tensor, items: np.ndarray, with_none: bool) -> Tensor:
        """Scores of `items` (n,), then s_none if `with_none`: (n [+ 1],), differentiable in z."""
        index = torch.as_tensor(np.asarray(items, dtype=np.int64))
        coefficients, prior_logits = self._split(self.full_state(z)[None])
        scores, _ = score_from_state(coefficients, prior_logits, self.rewards[index], self.bias[index], self.temperature)
        if with_none:
            return torch.cat([scores[0], self.none_utility(z)[None]])
        return scores[0]

    def jacobian(self, z: Tensor, items: np.ndarray, with_none: bool) -> tuple[Tensor, Tensor]:
        """Utilities u (n [+ 1],) and their Jacobian J = du/dz (n [+ 1], r) at z.

        Each item's score depends on the state only through that item, so one backward pass
        over the state replicated per item gives every row.
        """
        index = torch.as_tensor(np.asarray(items, dtype=np.int64))
        x = self.full_state(z.detach()).expand(len(index), self.dim).clone().requires_grad_(True)
        coefficients, prior_logits = self._split(x)
        scores, _ = score_from_state(
            coefficients, prior_logits, self.rewards[index][:, None, :], self.bias[index][:, None], self.temperature
        )
        (gradients,) = torch.autograd.grad(scores.sum(), x)  # (n, D)
        utilities, rows = scores[:, 0].detach(), gradients @ self.basis
        if with_none:
            z_leaf = z.detach().clone().requires_grad_(True)
            none = self.none_utility(z_leaf)
            (none_gradient,) = torch.autograd.grad(none, z_leaf)
            utilities = torch.cat([utilities, none.detach()[None]])
            rows = torch.cat([rows, none_gradient[None]])
        return utilities, rows


@dataclass(frozen=True)
class Posterior:
    """N(mean, covariance) over the prior coordinates z: mean (r,), covariance (r, r)."""

    mean: np.ndarray
    covariance: np.ndarray

    @classmethod
    def prior(cls, rank: int) -> "Posterior":
        """N(0, I_r): the population prior before any answer."""
        return cls(np.zeros(rank), np.eye(rank))


def negative_log_posterior(space: StateSpace, z: Tensor, observations: list[Observation]) -> Tensor:
    """1/2 |z|^2 - sum over answers of log p(answer | z) (a scalar)."""
    value = 0.5 * z @ z
    if not observations:
        return value
    items = np.concatenate([np.array(observation.items) for observation in observations])
    utilities = space.utilities(z, items, any(observation.with_none for observation in observations))
    start = 0
    for observation in observations:
        part = utilities[start : start + len(observation.items)]
        start += len(observation.items)
        if observation.with_none:
            part = torch.cat([part, utilities[-1:]])
        value = value - (observation.target() * torch.log_softmax(part, dim=0)).sum()
    return value


def laplace(
    space: StateSpace, observations: list[Observation], start: np.ndarray | None = None, newton_steps: int = 3
) -> Posterior:
    """The Laplace posterior given `observations`: damped Gauss-Newton steps from `start`
    (default: the prior mean) to the MAP, covariance = inverse Gauss-Newton Hessian there."""
    z = torch.zeros(space.rank, dtype=torch.float64) if start is None else torch.as_tensor(start, dtype=torch.float64)
    if not observations:
        return Posterior.prior(space.rank)
    current = negative_log_posterior(space, z, observations)
    for _ in range(newton_steps):
        gradient, hessian = _gradient_and_hessian(space, z, observations)
        step = torch.linalg.solve(hessian, gradient)
        for _ in range(8):  # halve the step until the objective does not increase
            value = negative_log_posterior(space, z - step, observations)
            if value <= current + 1e-9:
                break
            step = step / 2
        else:
            break
        z, current = z - step, value
        if float(step.norm()) < 1e-4:
            break
    _, hessian = _gradient_and_hessian(space, z, observations)
    covariance = torch.linalg.inv(hessian)
    return Posterior(z.numpy().copy(), (0.5 * (covariance + covariance.T)).numpy())


def _gradient_and_hessian(space: StateSpace, z: Tensor, observations: list[Observation]) -> tuple[Tensor, Tensor]:
    """Gradient (r,) and Gauss-Newton Hessian (r, r) of the negative log posterior at z (one
    Jacobian of every shown item, and of the none utility once)."""
    items = np.concatenate([np.array(observation.items) for observation in observations])
    with_none = any(observation.with_none for observation in observations)
    utilities, jacobian = space.jacobian(z, items, with_none)
    gradient, hessian, start = z.clone(), torch.eye(space.rank, dtype=torch.float64), 0
    for observation in observations:
        rows = torch.arange(start, start + len(observation.items))
        start += len(observation.items)
        if observation.with_none:
            rows = torch.cat([rows, torch.tensor([len(items)])])
        p = torch.softmax(utilities[rows], dim=0)
        gradient += jacobian[rows].T @ (p - observation.target())
        hessian += jacobian[rows].T @ (torch.diag(p) - torch.outer(p, p)) @ jacobian[rows]
    return gradient, hessian
