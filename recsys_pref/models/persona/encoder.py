"""The amortized encoder and its Lightning training loop (a Mult-DAE-style network).

An option of the persona model (`PersonaConfig.inference = "encoder"`); the default user state
is the exact solve of models.persona.inference. The encoder reads the L2-normalised history
(input dropout while training, one tanh hidden layer, a linear head to the M * (K + 1)
numbers) and gives a state in one forward pass. Given the model's shared side (ALS item
factors and taste bases, models.persona.factorization) it trains over that frozen side, so the
encoder-versus-exact comparison (BENCHMARKS.md, issue 11) differs in the user state alone;
without one it also learns item embeddings, biases and bases (the issue-3 model, kept for
the training-throughput row of `bench scale`).

Training: a Lightning Trainer on the multinomial likelihood over the catalog per user
(Mult-VAE's loss; "sampled_softmax" and "bpr" avoid the full softmax on large catalogs), with
an optional pull of user states toward the population (batch) mean. A share of the training
users is held out inside `fit` (80% of each one's positives in, 20% as targets) and NDCG@100
on them drives early stopping; the best epoch's weights are restored from memory.
"""
from __future__ import annotations

import lightning as L
import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from recsys_pref.models.persona.config import PersonaConfig
from recsys_pref.models.persona.scorer import SharedSide, base_rewards, score_from_state
from recsys_pref.models.persona.training import VALIDATION_K, ValidationNdcg, fit_module, quiet_lightning
from recsys_pref.models.state_bounds import bound_state

SCORE_BATCH = 512  # users scored at once: bounds memory at SCORE_BATCH x M x n_items floats


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


def prior_penalty(coefficients: Tensor, prior_logits: Tensor) -> Tensor:
    """Mean squared distance of the users' states (B, M*(K+1)) from their mean (the population prior)."""
    states = torch.cat([coefficients.flatten(1), prior_logits], dim=1)
    return (states - states.mean(dim=0, keepdim=True).detach()).pow(2).sum(dim=1).mean()


# -- the network ------------------------------------------------------------------------------
class PersonaNetwork(nn.Module):
    """Item embeddings E (n_items, d), biases b (n_items,), bases P (K, d) and the encoder.

    `forward(history)` returns scores (B, n_items); `encode` the user state; `rewards` r(i).
    """

    def __init__(self, item_counts: np.ndarray, config: PersonaConfig, shared: SharedSide | None = None) -> None:
        """item_counts (n_items,): training users per item; items never seen in training are
        no encoder input (they carry no signal). shared: a fitted shared side, held frozen
        (buffers); None learns E, b (from log(count + 1), centred: the popularity ranking) and
        P (orthogonal; the identity with `identity_bases`)."""
        super().__init__()
        n_items = len(item_counts)
        self.n_personas, self.n_bases = config.n_personas, config.n_bases
        self.temperature = config.temperature
        self.state_bounds = config.state_bounds
        if shared is not None:
            if shared.n_items != n_items or shared.n_bases != config.n_bases:
                raise ValueError(f"shared side has {shared.n_items} items and {shared.n_bases} bases, "
                                 f"expected {n_items} and {config.n_bases}")
            for name in ("item_embeddings", "item_bias", "bases"):
                self.register_buffer(name, torch.from_numpy(getattr(shared, name).copy()))
        else:
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
        self.validation = ValidationNdcg()

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        history = batch.to_dense()  # (B, n_items), densified on the training device
        coefficients, prior_logits = self.network.encode(history)
        loss = self._data_loss(history, coefficients, prior_logits)
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
        self.validation.reset()

    def validation_step(self, batch: tuple[Tensor, sp.csr_matrix], batch_idx: int) -> None:
        fold_in, targets = batch[0].to_dense(), batch[1]
        scores = self.network(fold_in).masked_fill((fold_in > 0) | self.banned, float("-inf"))
        values, top = scores.topk(min(VALIDATION_K, scores.shape[1]), dim=1)
        self.validation.add(top.masked_fill(torch.isinf(values), -1).cpu().numpy(), targets)

    def on_validation_epoch_end(self) -> None:
        self.validation.log(self)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.network.parameters(), lr=self.config.learning_rate, weight_decay=self.config.weight_decay,
            fused=self.device.type in ("cpu", "cuda"),
        )


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


def train_network(user_items: sp.csr_matrix, config: PersonaConfig, shared: SharedSide | None = None
                  ) -> tuple[PersonaNetwork, dict[str, float]]:
    """Fit a PersonaNetwork on (n_users, n_items) positives, over the frozen `shared` side when
    given (see PersonaNetwork); returns it (on the CPU, eval mode) and fit_module's summary
    (models.persona.training). Trains on the config's accelerator, strategy and devices."""
    with quiet_lightning():
        L.seed_everything(config.seed, workers=True, verbose=False)
    rng = np.random.default_rng(config.seed)
    train_rows, val_rows, fold_in, targets = split_validation_users(user_items, config.validation_share, rng)
    train = user_items[train_rows]
    item_counts = np.diff(train.tocsc().indptr)
    network = PersonaNetwork(item_counts, config, shared)
    banned = torch.from_numpy(item_counts == 0)
    module = PersonaTraining(network, config, banned)

    train_loader = DataLoader(
        range(train.shape[0]), batch_size=config.batch_size, shuffle=True,
        generator=torch.Generator().manual_seed(config.seed), collate_fn=lambda rows: sparse_rows(train[rows]),
    )
    val_loader = None
    if len(val_rows):
        val_loader = DataLoader(
            range(len(val_rows)), batch_size=SCORE_BATCH, collate_fn=lambda rows: (sparse_rows(fold_in[rows]), targets[rows])
        )
    _, summary = fit_module(module, config, config.max_epochs, config.patience, train_loader, val_loader)
    return network.cpu().eval(), summary  # the best epoch's weights (fit_module restores them)
