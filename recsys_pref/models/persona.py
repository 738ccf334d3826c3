"""The persona model: shared base rewards, each user a few attentive personas over them.

Equations (DESIGN.md, "The model"); items i have embeddings e_i in R^d and biases b_i, the K
shared bases are p_k in R^d, and a user u is M personas with signed coefficients c_um in R^K
and prior logits pi_um:

    r(i)     = P e_i                                   base rewards       (n_items, K)
    rho_um(i) = <c_um, r(i)>                           persona rewards    (B, M, n_items)
    alpha_um(i) = softmax_m(rho_um(i) / tau + pi_um)   attention          (B, M, n_items)
    s(u, i)  = sum_m alpha_um(i) rho_um(i) + b_i       score              (B, n_items)

A user's whole state is M * (K + 1) numbers. Two special cases are configurations of the same
code: M = 1 is linear reward factorization (PReF, s = <c_u, r(i)> + b_i) and identity bases
with K = d are AMP-CF (personas directly in item space, r(i) = e_i).

Where the user state comes from: an amortized encoder (Mult-DAE style: the L2-normalised
binary history, input dropout while training, one tanh hidden layer, a linear head to the
M * (K + 1) numbers). It is the state for known and new users alike: one forward pass folds a
new user in with every shared weight frozen, which is what strong generalization (held-out
users scored from their histories alone) needs, and the encoder shares statistical strength
across users where free per-user vectors would each be fitted from a few dozen positives.
Measured on ml-latest-small (strong generalization, validation users of split seeds 0-2,
table in `PersonaConfig`): free per-user states trained jointly, with new users folded in by
optimising their state against the frozen weights, reached NDCG@100 0.23 against the
encoder's 0.34, and refining the encoder's state by gradient steps on the user's own history
only overfits it (0.33 after 10 steps, 0.25 after 100). So the encoder is the only source of
user states, and fold-in is exactly one forward pass.

Training (`fit`): a Lightning Trainer on the multinomial likelihood over the catalog per user
(Mult-VAE's loss; "sampled_softmax" and "bpr" avoid the full softmax on large catalogs), with
two optional regularisers: distinct bases (off-diagonal of the normalised Gram of P) and a
pull of user states toward the population (batch) mean. A share of the training users is
held out inside `fit` (80% of each one's positives in, 20% as targets) and NDCG@100 on them
drives early stopping; the best epoch's weights are restored from memory.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from dataclasses import dataclass, fields, replace
from datetime import timedelta
from typing import Any, ClassVar, Iterator, Literal

import lightning as L
import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback, EarlyStopping
from torch import Tensor, nn
from torch.utils.data import DataLoader

from recsys_pref.evaluation.metrics import ndcg_at_k
from recsys_pref.models.base import NotFittedError, Recommender, check_user_items
from recsys_pref.models.warm_start import als_warm_start, apply_warm_start
from recsys_pref.models.state_bounds import StateBounds, bound_state

Loss = Literal["multinomial", "sampled_softmax", "bpr"]
LOSSES: tuple[str, ...] = ("multinomial", "sampled_softmax", "bpr")
PRESETS: tuple[str, ...] = ("persona", "pref-linear", "amp-cf")
VALIDATION_METRIC = "val_ndcg@100"
VALIDATION_K = 100
SCORE_BATCH = 512  # users scored at once: bounds memory at SCORE_BATCH x M x n_items floats


@dataclass(frozen=True)
class PersonaConfig:
    """Hyperparameters of the persona model (defaults chosen on ml-latest-small validation users).

    Model
    n_personas: M, personas per user (1 = PReF-linear). 2: three and four personas scored
        no better on validation (table below), and fewer numbers per user make onboarding
        cheaper.
    n_bases: K, shared base reward functions (DESIGN's budget: at most 64). 64 beat 32.
    embedding_dim: d, item embedding size; with identity bases K must equal d.
    temperature: tau, divides persona rewards inside the attention softmax (score units):
        small tau makes attention pick the persona that likes the item most (a max), large
        tau makes it follow the prior pi_u (a fixed mixture).
    identity_bases: fix P = I (K = d, not trained): AMP-CF, personas live in item space.

    warm_start: initialise item embeddings, bases and the encoder's default personas from
        implicit's ALS fitted on the same data (see models.warm_start); off by default.

    Encoder (the user state; see the module docstring)
    hidden_dim: width of the tanh hidden layer (Mult-DAE uses 600).
    input_dropout: share of history entries dropped while training (denoising; 0.5 as Mult-DAE).

    Optimisation
    learning_rate: AdamW step size.
    weight_decay: AdamW decoupled weight decay on every weight.
    batch_size: users per step.
    max_epochs: upper bound on passes over the training users.
    max_seconds: wall-clock budget of training in seconds (None: no limit); training stops
        after the step that crosses it (the throughput benchmark trains to a time box).
    patience: epochs without a better validation NDCG@100 before stopping.
    loss: "multinomial" (softmax over the whole catalog, the default), "sampled_softmax"
        (each positive against `n_negatives` uniformly drawn items shared by the batch) or
        "bpr" (Bradley-Terry on (positive, uniform negative) pairs); the last two never
        score the whole catalog during training, for large catalogs.
    n_negatives: sampled items per batch for "sampled_softmax".
    base_distinctness: weight of the squared off-diagonal of the normalised Gram of the bases
        (pushes bases toward distinct directions so each can carry its own label).
    prior_strength: weight of the mean squared distance of user states from the batch mean
        (shrinks users toward the population, a safeguard against extreme states).

    State bounds (safeguards against echo chambers; models.state_bounds; all 0 = off, which
    leaves every result bit-identical). Applied where the encoder produces the state, so
    training, fold-in and scoring all see the bounded state:
    state_shrinkage: s in [0, 1], each state becomes (1 - s) state + s prior, the prior being
        the encoder's state for an empty history (the population prior before any evidence).
    min_persona_entropy: floor in [0, 1] on the entropy of softmax(pi_u), as a share of log M.
    min_base_entropy: floor in [0, 1] on the entropy of each persona's base weights
        c_mk^2 / |c_m|^2, as a share of log K.

    Procedure
    validation_share: share of training users held out inside fit for early stopping (0
        trains max_epochs on every user without validation).
    seed: seeds initialisation, dropout, batching and the internal validation split.
    accelerator: Lightning accelerator ("cpu" by default; "auto" uses a GPU when present).
    progress: show Lightning's progress bar. Not a modelling choice.

    Validation NDCG@100 / Recall@20 on ml-latest-small, strong generalization, mean over the
    validation users of split seeds 0, 1, 2 (60 users each; seed-to-seed spread about 0.03,
    so differences under 0.01 are noise). Fitted on `val_train`; changes from the defaults:

        M=2 K=64 (default)                0.338 / 0.299    EASE l2=200 (for reference)  0.366 / 0.328
        M=2 K=32                          0.334 / 0.292    EASE l2=100                  0.364 / 0.322
        M=2 K=64 d=128                    0.331 / 0.301    ALS 64 factors, alpha 5      0.348 / 0.297
        M=3 K=32                          0.324 / 0.282
        M=4 K=64                          0.325 / 0.296
        M=1 K=64 (pref-linear)            0.326 / 0.293
        amp-cf d=64 / d=32                0.328 / 0.299, 0.323 / 0.292
        K=32, tau 0.3 / 3.0               0.318 / 0.282, 0.332 / 0.298
        K=32, lr 3e-3                     0.316 / 0.288
        K=32, weight_decay 0.05           0.334 / 0.295
        K=64, dropout 0.7                 0.327 / 0.297
        K=64, hidden 200                  0.332 / 0.289
        K=64, weight_decay 1.0            0.329 / 0.290
        K=64, batch 32                    0.330 / 0.297
        K=64, lr 5e-4, 300 epochs         0.326 / 0.296
        K=64, no validation, 80 epochs    0.330 / 0.295
        free per-user states (no encoder, fold-in by 150 Adam steps): 0.228
        encoder state refined by 10 / 30 / 100 Adam steps on the history: 0.334 / 0.309 / 0.245
    """

    n_personas: int = 2
    n_bases: int = 64
    embedding_dim: int = 64
    temperature: float = 1.0
    identity_bases: bool = False
    warm_start: bool = False
    hidden_dim: int = 600
    input_dropout: float = 0.5
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    max_epochs: int = 200
    max_seconds: float | None = None
    patience: int = 20
    loss: Loss = "multinomial"
    n_negatives: int = 256
    base_distinctness: float = 0.0
    prior_strength: float = 0.0
    state_shrinkage: float = 0.0
    min_persona_entropy: float = 0.0
    min_base_entropy: float = 0.0
    validation_share: float = 0.1
    seed: int = 0
    accelerator: str = "cpu"
    progress: bool = True

    def __post_init__(self) -> None:
        problems = []
        for name in ("n_personas", "n_bases", "embedding_dim", "hidden_dim", "batch_size", "max_epochs",
                     "patience", "n_negatives"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.temperature > 0:
            problems.append(f"temperature must be > 0, got {self.temperature}")
        if self.identity_bases and self.n_bases != self.embedding_dim:
            problems.append(
                f"identity_bases needs n_bases == embedding_dim (K = d), got {self.n_bases} and {self.embedding_dim}"
            )
        if not 0 <= self.input_dropout < 1:
            problems.append(f"input_dropout must be in [0, 1), got {self.input_dropout}")
        if not 0 <= self.validation_share < 1:
            problems.append(f"validation_share must be in [0, 1), got {self.validation_share}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            problems.append(f"max_seconds must be > 0 or None, got {self.max_seconds}")
        if not self.learning_rate > 0:
            problems.append(f"learning_rate must be > 0, got {self.learning_rate}")
        for name in ("weight_decay", "base_distinctness", "prior_strength"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("state_shrinkage", "min_persona_entropy", "min_base_entropy"):
            if not 0 <= getattr(self, name) <= 1:
                problems.append(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.loss not in LOSSES:
            problems.append(
                f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r} (pairwise answers: use bradley_terry_loss)"
            )
        if problems:
            raise ValueError("PersonaConfig: " + "; ".join(problems))

    @property
    def state_size(self) -> int:
        """Numbers per user: M * (K + 1)."""
        return self.n_personas * (self.n_bases + 1)

    @property
    def state_bounds(self) -> StateBounds:
        """The safeguard bounds on user states this configuration sets (models.state_bounds)."""
        return StateBounds(self.state_shrinkage, self.min_persona_entropy, self.min_base_entropy)

    @property
    def variant(self) -> str:
        """The model this configuration is: "amp-cf", "pref-linear" or "persona"."""
        if self.identity_bases:
            return "amp-cf"
        return "pref-linear" if self.n_personas == 1 else "persona"

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "PersonaConfig":
        """The configuration `name` ("persona", "pref-linear" or "amp-cf") with `overrides`.

        pref-linear has M = 1; amp-cf has identity bases and K = d (giving one of n_bases and
        embedding_dim sets the other).
        """
        if name not in PRESETS:
            raise ValueError(f"unknown persona preset {name!r}; valid: {', '.join(PRESETS)}")
        valid = {field.name for field in fields(cls)}
        unknown = sorted(set(overrides) - valid)
        if unknown:
            raise ValueError(f"{name} has no hyperparameter(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}")
        settings: dict[str, Any] = {}
        if name == "pref-linear":
            settings = {"n_personas": 1}
        elif name == "amp-cf":
            dim = overrides.get("embedding_dim", overrides.get("n_bases", cls.embedding_dim))
            settings = {"identity_bases": True, "n_bases": dim, "embedding_dim": dim}
        return cls(**(settings | overrides))


# -- the equations ----------------------------------------------------------------------------
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


# -- losses and regularisers ------------------------------------------------------------------
def multinomial_loss(scores: Tensor, history: Tensor) -> Tensor:
    """-sum_i x_ui log softmax_i(s_u), averaged over users: (B, n_items), (B, n_items) -> ()."""
    return -(F.log_softmax(scores, dim=1) * history).sum(dim=1).mean()


def bradley_terry_loss(score_i: Tensor, score_j: Tensor) -> Tensor:
    """-log sigma(s_i - s_j) averaged over pairs where item i is preferred to item j (any shape).

    The likelihood of pairwise answers ("which one?") and, with j a sampled unobserved item,
    BPR's loss.
    """
    return -F.logsigmoid(score_i - score_j).mean()


def sampled_softmax_loss(positive_scores: Tensor, negative_scores: Tensor, positive_mask: Tensor) -> Tensor:
    """-log of each positive's softmax against the sampled negatives, averaged over positives.

    positive_scores (B, L) with positive_mask (B, L) marking real positives (rows are padded);
    negative_scores (B, S), -inf where a sample is one of the user's positives.
    """
    competitors = torch.logsumexp(negative_scores, dim=1, keepdim=True)  # (B, 1)
    log_p = positive_scores - torch.logaddexp(positive_scores, competitors)  # (B, L)
    return -(log_p * positive_mask).sum() / positive_mask.sum().clamp(min=1)


def base_distinctness_penalty(bases: Tensor) -> Tensor:
    """Sum of squared off-diagonal entries of the normalised Gram of P (K, d): 0 iff orthogonal."""
    unit = F.normalize(bases, dim=1)
    gram = unit @ unit.T  # (K, K)
    return (gram - torch.diag(torch.diagonal(gram))).pow(2).sum()


def prior_penalty(coefficients: Tensor, prior_logits: Tensor) -> Tensor:
    """Mean squared distance of the users' states (B, M*(K+1)) from their mean (the population prior)."""
    states = torch.cat([coefficients.flatten(1), prior_logits], dim=1)
    return (states - states.mean(dim=0, keepdim=True).detach()).pow(2).sum(dim=1).mean()


# -- the network ------------------------------------------------------------------------------
class PersonaNetwork(nn.Module):
    """Item embeddings E (n_items, d), biases b (n_items,), bases P (K, d) and the encoder.

    `forward(history)` returns scores (B, n_items); `encode` the user state; `rewards` r(i).
    """

    def __init__(self, item_counts: np.ndarray, config: PersonaConfig) -> None:
        """item_counts (n_items,): training users per item. Items never seen in training are
        no encoder input (they carry no signal) and all biases start at log(count + 1), the
        popularity ranking, centred."""
        super().__init__()
        n_items = len(item_counts)
        self.n_personas, self.n_bases = config.n_personas, config.n_bases
        self.temperature = config.temperature
        self.state_bounds = config.state_bounds
        log_counts = torch.log1p(torch.as_tensor(item_counts, dtype=torch.float32))
        self.item_embeddings = nn.Parameter(torch.randn(n_items, config.embedding_dim) / config.embedding_dim**0.5)
        self.item_bias = nn.Parameter(log_counts - log_counts.mean())
        if config.identity_bases:
            self.register_buffer("bases", torch.eye(config.embedding_dim))
        else:
            self.bases = nn.Parameter(nn.init.orthogonal_(torch.empty(config.n_bases, config.embedding_dim)))
        self.register_buffer("input_items", torch.from_numpy(np.flatnonzero(item_counts > 0)))
        self.dropout = nn.Dropout(config.input_dropout)
        self.hidden = nn.Linear(len(self.input_items), config.hidden_dim)
        self.head = nn.Linear(config.hidden_dim, config.state_size)
        for layer in (self.hidden, self.head):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def rewards(self) -> Tensor:
        """r(i) for every item (n_items, K)."""
        return base_rewards(self.item_embeddings, self.bases)

    def encode(self, history: Tensor, bounded: bool = True) -> tuple[Tensor, Tensor]:
        """User state from histories (B, n_items): coefficients (B, M, K), prior logits (B, M),
        within the configured state bounds (shrinkage toward `prior_state`, entropy floors)
        unless `bounded` is False (the raw encoder output)."""
        x = self.dropout(F.normalize(history[:, self.input_items], dim=1))  # (B, n_inputs), unit rows
        coefficients, prior_logits = self._split(self.head(torch.tanh(self.hidden(x))))
        if not (bounded and self.state_bounds.active):
            return coefficients, prior_logits
        return bound_state(coefficients, prior_logits, *self.prior_state(), self.state_bounds)

    def prior_state(self) -> tuple[Tensor, Tensor]:
        """The unbounded state of an empty history, (1, M, K) and (1, M): the population prior
        that shrinkage pulls toward (a normalised empty history is all zeros)."""
        return self._split(self.head(torch.tanh(self.hidden.bias))[None])

    def _split(self, state: Tensor) -> tuple[Tensor, Tensor]:
        """Flat states (B, M*(K+1)) -> coefficients (B, M, K), prior logits (B, M)."""
        coefficients = state[:, : self.n_personas * self.n_bases].reshape(-1, self.n_personas, self.n_bases)
        return coefficients, state[:, self.n_personas * self.n_bases :]

    def score_items(self, coefficients: Tensor, prior_logits: Tensor, items: Tensor) -> Tensor:
        """Scores (B, L) of per-user item lists `items` (B, L) only (sampled losses)."""
        scores, _ = score_from_state(
            coefficients, prior_logits, self.rewards()[items], self.item_bias[items], self.temperature
        )
        return scores

    def forward(self, history: Tensor) -> Tensor:
        """Scores (B, n_items) of users with histories (B, n_items)."""
        coefficients, prior_logits = self.encode(history)
        scores, _ = score_from_state(coefficients, prior_logits, self.rewards(), self.item_bias, self.temperature)
        return scores


# -- training ---------------------------------------------------------------------------------
class PersonaTraining(L.LightningModule):
    """The training loop: loss + regularisers per batch, NDCG@100 on validation users per epoch.

    Training batches are histories (B, n_items) as sparse COO tensors, densified on the
    training device (a batch crosses to a GPU at the size of its positives); validation
    batches are (fold-in (B, n_items) sparse COO tensor, targets scipy CSR). `banned` (n_items,) marks items never seen in training,
    which validation never ranks (as the evaluation protocol).
    """

    def __init__(self, network: PersonaNetwork, config: PersonaConfig, banned: Tensor) -> None:
        super().__init__()
        self.network, self.config = network, config
        self.register_buffer("banned", banned)
        self._ndcg_sum, self._ndcg_users = 0.0, 0

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        history = batch.to_dense()  # (B, n_items), densified on the training device
        coefficients, prior_logits = self.network.encode(history)
        loss = self._data_loss(history, coefficients, prior_logits)
        if self.config.base_distinctness > 0:
            loss = loss + self.config.base_distinctness * base_distinctness_penalty(self.network.bases)
        if self.config.prior_strength > 0:
            loss = loss + self.config.prior_strength * prior_penalty(coefficients, prior_logits)
        self.log("loss", loss, prog_bar=True, batch_size=history.shape[0])
        return loss

    def _data_loss(self, history: Tensor, coefficients: Tensor, prior_logits: Tensor) -> Tensor:
        network = self.network
        if self.config.loss == "multinomial":
            scores, _ = score_from_state(
                coefficients, prior_logits, network.rewards(), network.item_bias, network.temperature
            )
            return multinomial_loss(scores, history)
        # positives as padded index lists (B, L): the largest entries of each history row
        weights, positives = history.topk(int((history > 0).sum(dim=1).max()), dim=1)
        mask = (weights > 0).float()
        positive_scores = network.score_items(coefficients, prior_logits, positives)
        n_items = history.shape[1]
        if self.config.loss == "bpr":
            negatives = torch.randint(n_items, positives.shape, device=history.device)
            negative_scores = network.score_items(coefficients, prior_logits, negatives)
            return bradley_terry_loss(positive_scores[mask > 0], negative_scores[mask > 0])
        samples = torch.randint(n_items, (self.config.n_negatives,), device=history.device)
        samples = samples.expand(history.shape[0], -1)  # (B, S), shared by the batch
        negative_scores = network.score_items(coefficients, prior_logits, samples)
        negative_scores = negative_scores.masked_fill(history.gather(1, samples) > 0, float("-inf"))
        return sampled_softmax_loss(positive_scores, negative_scores, mask)

    def on_validation_epoch_start(self) -> None:
        self._ndcg_sum, self._ndcg_users = 0.0, 0

    def validation_step(self, batch: tuple[Tensor, sp.csr_matrix], batch_idx: int) -> None:
        fold_in, targets = batch[0].to_dense(), batch[1]
        scores = self.network(fold_in).masked_fill((fold_in > 0) | self.banned, float("-inf"))
        values, top = scores.topk(min(VALIDATION_K, scores.shape[1]), dim=1)
        recommended = top.masked_fill(torch.isinf(values), -1).cpu().numpy()
        ndcg = ndcg_at_k(recommended, targets, VALIDATION_K)
        self._ndcg_sum += float(np.nansum(ndcg))
        self._ndcg_users += int(np.isfinite(ndcg).sum())

    def on_validation_epoch_end(self) -> None:
        self.log(VALIDATION_METRIC, self._ndcg_sum / max(self._ndcg_users, 1), prog_bar=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.network.parameters(), lr=self.config.learning_rate, weight_decay=self.config.weight_decay,
            fused=self.device.type in ("cpu", "cuda"),
        )


class KeepBestWeights(Callback):
    """Keeps a copy of the network's weights at the best validation NDCG@100 (in memory)."""

    def __init__(self) -> None:
        self.best_score = -np.inf
        self.best_epoch = -1
        self.best_state: dict[str, Tensor] | None = None

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        score = float(trainer.callback_metrics[VALIDATION_METRIC])
        if score > self.best_score:
            self.best_score, self.best_epoch = score, trainer.current_epoch
            self.best_state = copy.deepcopy(module.network.state_dict())


def split_validation_users(
    user_items: sp.csr_matrix, share: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, sp.csr_matrix, sp.csr_matrix]:
    """Training rows, validation rows, and the validation users' fold-in (80%) and target (20%)
    parts. Only users with at least 2 positives can be validation users; empty rows are dropped."""
    counts = np.diff(user_items.indptr)
    active = np.flatnonzero(counts > 0)
    eligible = np.flatnonzero(counts >= 2)
    n_val = min(int(round(share * len(active))), len(eligible), len(active) - 1)
    val_rows = np.sort(rng.choice(eligible, size=max(n_val, 0), replace=False))
    train_rows = np.setdiff1d(active, val_rows)
    rows = user_items[val_rows]
    in_fold = np.zeros(rows.nnz, bool)
    for row in range(rows.shape[0]):
        start, n = rows.indptr[row], rows.indptr[row + 1] - rows.indptr[row]
        in_fold[start + rng.permutation(n)[: int(np.clip(round(0.8 * n), 1, n - 1))]] = True

    def part(keep: np.ndarray) -> sp.csr_matrix:
        matrix = sp.csr_matrix((rows.data * keep, rows.indices.copy(), rows.indptr.copy()), shape=rows.shape)
        matrix.eliminate_zeros()
        return matrix

    return train_rows, val_rows, part(in_fold), part(~in_fold)


def sparse_rows(rows: sp.csr_matrix) -> Tensor:
    """A scipy CSR matrix (B, n_items) as a float32 torch sparse COO tensor of the same shape."""
    coo = rows.tocoo()
    indices = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))  # (2, nnz)
    return torch.sparse_coo_tensor(indices, torch.from_numpy(coo.data.astype(np.float32)), size=rows.shape,
                                   check_invariants=False)  # valid by construction


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Silence Lightning's info banners (GPU/TPU available, seed set) and its advice about
    dataloader workers and a skipped validation loop."""
    loggers = [logging.getLogger(name) for name in ("lightning", "lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        warnings.filterwarnings("ignore", message=".*no `val_dataloader`.*")
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def train_network(user_items: sp.csr_matrix, config: PersonaConfig) -> tuple[PersonaNetwork, dict[str, float]]:
    """Fit a PersonaNetwork on (n_users, n_items) positives; returns it (on the CPU, eval mode)
    and a summary: "best_epoch" (0-based epoch whose weights were kept; -1 without validation),
    "epochs" (epochs run), "steps" (optimiser steps taken) and "val_ndcg@100" (at the best
    epoch; NaN without validation)."""
    with quiet_lightning():
        L.seed_everything(config.seed, workers=True, verbose=False)
    rng = np.random.default_rng(config.seed)
    train_rows, val_rows, fold_in, targets = split_validation_users(user_items, config.validation_share, rng)
    train = user_items[train_rows]
    item_counts = np.diff(train.tocsc().indptr)
    network = PersonaNetwork(item_counts, config)
    if config.warm_start:
        apply_warm_start(network, als_warm_start(train, config.n_personas, config.n_bases, config.embedding_dim,
                                                 config.identity_bases, config.seed))
    banned = torch.from_numpy(item_counts == 0)
    module = PersonaTraining(network, config, banned)

    train_loader = DataLoader(
        range(train.shape[0]), batch_size=config.batch_size, shuffle=True,
        generator=torch.Generator().manual_seed(config.seed), collate_fn=lambda rows: sparse_rows(train[rows]),
    )
    callbacks: list[Callback] = []
    val_loader = None
    keep_best = KeepBestWeights()
    if len(val_rows):
        val_loader = DataLoader(
            range(len(val_rows)), batch_size=SCORE_BATCH, collate_fn=lambda rows: (sparse_rows(fold_in[rows]), targets[rows])
        )
        callbacks = [EarlyStopping(VALIDATION_METRIC, mode="max", patience=config.patience), keep_best]
    deterministic_before = (torch.are_deterministic_algorithms_enabled(),
                            torch.is_deterministic_algorithms_warn_only_enabled())
    with quiet_lightning():
        trainer = L.Trainer(
            accelerator=config.accelerator, devices=1, max_epochs=config.max_epochs, logger=False,
            max_time=None if config.max_seconds is None else timedelta(seconds=config.max_seconds),
            enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=config.progress,
            num_sanity_val_steps=0, callbacks=callbacks,
            deterministic=True if config.accelerator == "cpu" else "warn",
        )
        try:
            trainer.fit(module, train_loader, val_loader)
        finally:  # Lightning sets the global flag; leave it as it was
            torch.use_deterministic_algorithms(deterministic_before[0], warn_only=deterministic_before[1])
    if keep_best.best_state is not None:
        network.load_state_dict(keep_best.best_state)
    summary = {"best_epoch": float(keep_best.best_epoch), "epochs": float(trainer.current_epoch),
               "steps": float(trainer.global_step),
               VALIDATION_METRIC: float(keep_best.best_score) if len(val_rows) else float("nan")}
    return network.cpu().eval(), summary


# -- the recommender --------------------------------------------------------------------------
@dataclass(frozen=True)
class PersonaState:
    """Users' states: coefficients (n, M, K) and prior_logits (n, M), float32 numpy.

    It is all a user is to the model (M * (K + 1) numbers); it may come from `fold_in`, from
    onboarding answers or from an edit (a muted persona), as long as the shapes fit the model.
    """

    coefficients: np.ndarray
    prior_logits: np.ndarray

    def __post_init__(self) -> None:
        coefficients = np.asarray(self.coefficients, dtype=np.float32)
        prior_logits = np.asarray(self.prior_logits, dtype=np.float32)
        if coefficients.ndim != 3 or prior_logits.shape != coefficients.shape[:2]:
            raise ValueError(
                f"a persona state needs coefficients (n, M, K) and prior_logits (n, M); got shapes "
                f"{coefficients.shape} and {prior_logits.shape}"
            )
        if not (np.isfinite(coefficients).all() and np.isfinite(prior_logits).all()):
            raise ValueError("persona state contains NaN or infinite values")
        object.__setattr__(self, "coefficients", coefficients)
        object.__setattr__(self, "prior_logits", prior_logits)

    def __len__(self) -> int:
        return self.coefficients.shape[0]

    def vectors(self) -> np.ndarray:
        """(n, M*(K+1)): each user's state as one flat vector (coefficients, then prior logits)."""
        return np.concatenate([self.coefficients.reshape(len(self), -1), self.prior_logits], axis=1)

    @classmethod
    def from_vectors(cls, vectors: np.ndarray, n_personas: int, n_bases: int) -> "PersonaState":
        """Inverse of `vectors` for M = n_personas, K = n_bases."""
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if vectors.shape[1] != n_personas * (n_bases + 1):
            raise ValueError(f"state vectors need {n_personas * (n_bases + 1)} columns, got {vectors.shape[1]}")
        split = n_personas * n_bases
        return cls(vectors[:, :split].reshape(-1, n_personas, n_bases), vectors[:, split:])


class PersonaRecommender(Recommender):
    """The persona model behind the `Recommender` interface.

    Known and new users are scored the same way: the encoder reads the history rows given
    (`userids` are ignored; a user's state is a function of their history). An empty history
    gets the encoder's state for "nothing seen" (a popularity-like ranking) in `score`, and a
    ValueError in `fold_in`.
    """

    name: ClassVar[str] = "persona"
    config_class: ClassVar[type | None] = PersonaConfig
    #: Tuning grids (subclasses): at most 8 configurations, the budget every model gets, the
    #: default first, K <= 64; drawn from the validation table in `PersonaConfig`.
    grid: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, config: PersonaConfig | None = None, **params: Any) -> None:
        if config is None:
            config = PersonaConfig.preset(type(self).name, **params)
            name = type(self).name
        else:
            config = replace(config, **params) if params else config
            name = config.variant
        super().__init__(config)
        self.name = name  # type: ignore[misc]  # per instance: the preset it was built from
        self.network: PersonaNetwork | None = None
        self.training_summary: dict[str, float] = {}

    @property
    def state_bytes(self) -> int:
        """Bytes of one user's state in float32: M * (K + 1) * 4."""
        return self.config.state_size * 4

    def _fit(self, user_items: sp.csr_matrix) -> None:
        self.network, self.training_summary = train_network(user_items, self.config)

    def _network(self) -> PersonaNetwork:
        if self.network is None:
            raise NotFittedError(f"{self.name} is not fitted: call fit() first")
        return self.network

    def _score(self, user_items: sp.csr_matrix, userids: np.ndarray | None) -> np.ndarray:
        network = self._network()
        scores = np.empty(user_items.shape, np.float32)
        with torch.no_grad():
            for start in range(0, user_items.shape[0], SCORE_BATCH):
                history = torch.from_numpy(user_items[start : start + SCORE_BATCH].toarray())
                scores[start : start + SCORE_BATCH] = network(history).numpy()
        return scores

    def fold_in(self, user_items: sp.spmatrix, bounded: bool = True) -> PersonaState:
        """States of new users from their histories (n, n_items): one encoder pass, no weight
        changes. bounded=False skips the config's state bounds (onboarding builds its prior
        from raw states and bounds every state it scores, so the bounds apply once)."""
        network = self._network()
        matrix = check_user_items(user_items, self.n_items)
        empty = np.flatnonzero(np.diff(matrix.indptr) == 0)
        if len(empty):
            raise ValueError(f"cannot fold in users with an empty history (rows {empty[:10].tolist()}); "
                             "onboard them with questions instead")
        with torch.no_grad():
            coefficients, prior_logits = network.encode(torch.from_numpy(matrix.toarray()), bounded)
        return PersonaState(coefficients.numpy(), prior_logits.numpy())

    def explain_scores(self, state: PersonaState) -> tuple[np.ndarray, np.ndarray]:
        """Scores (n, n_items) and attention (n, M, n_items) of users in `state`."""
        network = self._check_state(state)
        n, n_items = len(state), network.item_bias.shape[0]
        scores = np.empty((n, n_items), np.float32)
        attention = np.empty((n, self.config.n_personas, n_items), np.float32)
        with torch.no_grad():
            rewards = network.rewards()
            for start in range(0, n, SCORE_BATCH):
                batch = slice(start, start + SCORE_BATCH)
                s, alpha = score_from_state(
                    torch.from_numpy(state.coefficients[batch]), torch.from_numpy(state.prior_logits[batch]),
                    rewards, network.item_bias, network.temperature,
                )
                scores[batch], attention[batch] = s.numpy(), alpha.numpy()
        return scores, attention

    def score_state(self, state: PersonaState) -> np.ndarray:
        """Scores (n, n_items) of users in `state`."""
        return self.explain_scores(state)[0]

    def persona_queries(self, state: PersonaState) -> np.ndarray:
        """Each persona as a vector in item space, q_um = sum_k c_umk p_k (n, M, d), so that
        rho_um(i) = <q_um, e_i> (the retrieval queries)."""
        network = self._check_state(state)
        return state.coefficients @ network.bases.detach().numpy()

    @property
    def item_embeddings(self) -> np.ndarray:
        """E (n_items, d)."""
        return self._network().item_embeddings.detach().numpy().copy()

    @property
    def item_bias(self) -> np.ndarray:
        """b (n_items,)."""
        return self._network().item_bias.detach().numpy().copy()

    @property
    def bases(self) -> np.ndarray:
        """P (K, d)."""
        return self._network().bases.detach().numpy().copy()

    def _check_state(self, state: PersonaState) -> PersonaNetwork:
        network = self._network()
        if not isinstance(state, PersonaState):
            raise TypeError(f"expected a PersonaState, got {type(state).__name__}")
        expected = (self.config.n_personas, self.config.n_bases)
        if state.coefficients.shape[1:] != expected:
            raise ValueError(f"state has (M, K) = {state.coefficients.shape[1:]}, the model {expected}")
        return network


class PersonaModel(PersonaRecommender):
    """The persona model (M personas over K learned bases)."""

    name: ClassVar[str] = "persona"
    grid: ClassVar[list[dict[str, Any]]] = [
        {"n_personas": 2, "n_bases": 64},
        {"n_personas": 2, "n_bases": 32},
        {"n_personas": 3, "n_bases": 64},
        {"n_personas": 4, "n_bases": 64},
        {"n_personas": 2, "n_bases": 64, "temperature": 3.0},
        {"n_personas": 2, "n_bases": 64, "temperature": 0.3},
        {"n_personas": 2, "n_bases": 64, "weight_decay": 0.05},
        {"n_personas": 2, "n_bases": 16},
    ]


class PrefLinear(PersonaRecommender):
    """PReF-linear: one persona, s = <c_u, r(i)> + b_i."""

    name: ClassVar[str] = "pref-linear"
    grid: ClassVar[list[dict[str, Any]]] = [
        {"n_bases": 64},
        {"n_bases": 32},
        {"n_bases": 16},
        {"n_bases": 64, "weight_decay": 0.05},
        {"n_bases": 32, "weight_decay": 0.05},
        {"n_bases": 64, "input_dropout": 0.3},
        {"n_bases": 64, "input_dropout": 0.7},
        {"n_bases": 64, "hidden_dim": 200},
    ]


class AmpCF(PersonaRecommender):
    """AMP-CF: personas in item space (identity bases, K = d)."""

    name: ClassVar[str] = "amp-cf"
    grid: ClassVar[list[dict[str, Any]]] = [
        {"embedding_dim": 64},
        {"embedding_dim": 32},
        {"embedding_dim": 16},
        {"embedding_dim": 64, "n_personas": 3},
        {"embedding_dim": 32, "n_personas": 3},
        {"embedding_dim": 64, "temperature": 3.0},
        {"embedding_dim": 64, "temperature": 0.3},
        {"embedding_dim": 64, "weight_decay": 0.05},
    ]
