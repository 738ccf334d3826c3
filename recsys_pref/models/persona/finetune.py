"""Softmax fine-tune of the shared side through the exact user solve (`finetune="softmax"`).

ALS fits the item side for a least-squares loss; on large sparse catalogs (gowalla) a softmax
over the catalog ranks better. The fine-tune trains the item rewards r(i) = P e_i (n_items, K)
so that the state inference computes ranks each user's held-out items first:

    per user and step: hide `finetune_holdout` of the history (targets T), solve the state from
    the rest (F) with inference's own single-persona solve (`solve_personas`, the exact
    weighted least squares against G = R^T R; differentiable: a Cholesky solve), score every
    item with the scorer's equation (`score_from_state`), and take

        loss = - mean_{t in T} log softmax_{i not in F}( s(u, i) / T_ft )

    with T_ft = `finetune_temperature`. `finetune_cosine` trains cosines instead: unit item
    rewards (stored unit, so the model keeps them) and the state normalised inside the loss
    (a per-user scale, which leaves the user's ranking unchanged; the fitted model's inference
    scales each user the same way, `InferenceSettings.unit_scale`, so that its item biases, the
    popularity prior, are in the loss's cosine units). `finetune_negatives > 0`
    replaces the catalog by that many uniform negatives shared by the batch.

So the gradient flows through exactly the computation fold-in performs at M = 1. With M > 1
inference runs EM over the fine-tuned rewards (its per-persona solves are the same least
squares); the training step uses the single-persona solve. Early stopping and the kept epoch
use validation NDCG@100 of the *configured* inference (M personas, EM) on validation users
carved from the training data by the caller (never the test users).

Training runs in the Lightning harness (models.persona.training): CPU or GPU, and
`strategy="ddp"` over several processes.
"""
from __future__ import annotations

import lightning as L
import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from recsys_pref.core.ranking import top_k
from recsys_pref.models.persona.config import PersonaConfig
from recsys_pref.models.persona.encoder import SCORE_BATCH, sampled_softmax_loss, split_validation_users
from recsys_pref.models.persona.factorization import als_item_factors, taste_bases
from recsys_pref.models.persona.inference import History, InferenceSettings, fold_in_scores, solve_personas
from recsys_pref.models.persona.popularity import choose_popularity_prior
from recsys_pref.models.persona.scorer import score_from_state
from recsys_pref.models.persona.training import (
    VALIDATION_K,
    VALIDATION_METRIC,
    ValidationNdcg,
    fit_module,
    quiet_lightning,
)


def padded_histories(user_items: sp.csr_matrix, rows: np.ndarray) -> tuple[Tensor, Tensor, Tensor]:
    """Histories of `rows` padded to the longest: items (B, L) int64 (0 where padded), weights
    (B, L) float32 x_ui (0 where padded), mask (B, L) bool."""
    part = user_items[rows]
    lengths = np.diff(part.indptr)
    mask = np.arange(max(int(lengths.max(initial=0)), 1))[None, :] < lengths[:, None]
    items = np.zeros(mask.shape, np.int64)
    weights = np.zeros(mask.shape, np.float32)
    items[mask], weights[mask] = part.indices, part.data
    return torch.from_numpy(items), torch.from_numpy(weights), torch.from_numpy(mask)


def length_batches(user_items: sp.csr_matrix, batch_size: int, seed: int) -> list[np.ndarray]:
    """The training rows (at least 2 positives: a seen item and a target) in batches of about
    `batch_size` users of similar history length, since a batch costs B x its longest history
    (gowalla: the longest of 1,024 random users is 500 items on average, the mean history 27).
    Ties in length are broken at random; the loader shuffles the batches every epoch."""
    lengths = np.diff(user_items.indptr)
    rows = np.flatnonzero(lengths >= 2)
    order = rows[np.lexsort((np.random.default_rng(seed).random(len(rows)), lengths[rows]))]
    return np.array_split(order, max(1, -(-len(order) // batch_size)))


def holdout_masks(mask: Tensor, share: float) -> tuple[Tensor, Tensor]:
    """A random split of each history (B, L) into the part the solve sees and the targets:
    each entry is a target with probability `share`, but every history keeps one entry."""
    draw = torch.rand(mask.shape, device=mask.device).masked_fill(~mask, -1.0)  # (B, L)
    kept_one = torch.zeros_like(mask).scatter(1, draw.argmax(dim=1, keepdim=True), True)
    seen = mask & ((draw >= share) | kept_one)
    return seen, mask & ~seen


def validation_top_k(rewards: np.ndarray, fold_in: sp.csr_matrix, settings: InferenceSettings, temperature: float
                     ) -> np.ndarray:
    """Top-100 item ids (B, 100) of the configured inference (infer_states, then the scorer's
    equation) over `rewards` (n_items, K) for histories `fold_in` (B, n_items), fold-in excluded."""
    return top_k(fold_in_scores(fold_in, rewards, settings, temperature), VALIDATION_K, exclude=fold_in)[0]


def validation_score(rewards: np.ndarray, fold_in: sp.csr_matrix, targets: sp.csr_matrix,
                     settings: InferenceSettings, temperature: float) -> float:
    """Validation NDCG@100 of `rewards` over all validation users (one process, no sharding)."""
    metric = ValidationNdcg()
    for start in range(0, fold_in.shape[0], SCORE_BATCH):
        rows = slice(start, start + SCORE_BATCH)
        metric.add(validation_top_k(rewards, fold_in[rows], settings, temperature), targets[rows])
    return metric.total / max(metric.users, 1)


class SharedSideFinetune(L.LightningModule):
    """The item rewards R (n_items, K) as the only parameter, trained through the exact solve.

    Training batches: padded histories (items, weights, mask) of training users of similar
    history length (`length_batches`). Validation
    batches: (row indices into the validation fold-in/targets): the configured inference
    (infer_states with `settings`) over the current rewards, top-100 without the fold-in."""

    def __init__(self, rewards: np.ndarray, config: PersonaConfig, settings: InferenceSettings,
                 fold_in: sp.csr_matrix, targets: sp.csr_matrix) -> None:
        super().__init__()
        self.config, self.settings = config, settings
        self.rewards = nn.Parameter(torch.from_numpy(np.array(rewards, dtype=np.float32)))
        self.fold_in, self.targets = fold_in, targets
        self.validation = ValidationNdcg()

    def item_rewards(self) -> Tensor:
        """r(i) as inference sees them (n_items, K): unit rows with `finetune_cosine`."""
        return F.normalize(self.rewards, dim=1) if self.config.finetune_cosine else self.rewards

    def user_states(self, rewards: Tensor, items: Tensor, weights: Tensor, seen: Tensor) -> Tensor:
        """The single-persona states (B, 1, K) of histories restricted to `seen`, by inference's
        own solve (the fold-in of those items at M = 1); differentiable in `rewards`."""
        history = History(items, self.settings.alpha * weights * seen, seen)
        return solve_personas(rewards.T @ rewards, rewards[items], history, seen[:, None, :].to(rewards.dtype),
                              self.settings.regularization)

    def training_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        items, weights, mask = batch
        seen, target = holdout_masks(mask, self.config.finetune_holdout)  # (B, L) each
        rewards = self.item_rewards()  # (n_items, K)
        coefficients = self.user_states(rewards, items, weights, seen)  # (B, 1, K)
        if self.config.finetune_cosine:
            coefficients = F.normalize(coefficients, dim=2)
        prior_logits = torch.zeros(coefficients.shape[:2], dtype=rewards.dtype, device=rewards.device)
        loss = self._softmax_loss(coefficients, prior_logits, rewards, items, seen, target, mask)
        self.log("loss", loss, prog_bar=True, batch_size=items.shape[0])
        return loss

    def _softmax_loss(self, coefficients: Tensor, prior_logits: Tensor, rewards: Tensor, items: Tensor,
                      seen: Tensor, target: Tensor, mask: Tensor) -> Tensor:
        """- mean over targets of log softmax of s / T_ft against the items the solve did not
        see (the whole catalog, or `finetune_negatives` uniform samples)."""
        temperature, n_items = self.config.finetune_temperature, rewards.shape[0]
        rows = torch.arange(items.shape[0], device=items.device)[:, None].expand_as(items)
        if self.config.finetune_negatives == 0:
            bias = torch.zeros(n_items, dtype=rewards.dtype, device=rewards.device)
            scores, _ = score_from_state(coefficients, prior_logits, rewards, bias, self.config.temperature)
            scores = (scores / temperature).index_put((rows[seen], items[seen]), torch.tensor(-torch.inf))
            log_p = torch.log_softmax(scores, dim=1).gather(1, items).masked_fill(~target, 0.0)  # (B, L)
            per_user = log_p.sum(dim=1) / target.sum(dim=1).clamp_min(1)
            return -per_user.sum() / target.any(dim=1).sum().clamp_min(1)
        samples = torch.randint(n_items, (self.config.finetune_negatives,), device=items.device)  # (S,)
        positives, _ = score_from_state(coefficients, prior_logits, rewards[items], torch.zeros(items.shape, dtype=rewards.dtype,
                                        device=rewards.device), self.config.temperature)  # (B, L)
        negatives, _ = score_from_state(coefficients, prior_logits, rewards[samples], torch.zeros(
            len(samples), dtype=rewards.dtype, device=rewards.device), self.config.temperature)  # (B, S)
        in_history = torch.zeros(items.shape[0], n_items, dtype=torch.bool, device=items.device)
        in_history[rows[mask], items[mask]] = True
        negatives = negatives.masked_fill(in_history[:, samples], -torch.inf)
        return sampled_softmax_loss(positives / temperature, negatives / temperature, target.to(rewards.dtype))

    def on_validation_epoch_start(self) -> None:
        self.validation.reset()

    def validation_step(self, batch: Tensor, batch_idx: int) -> None:
        rows = batch.cpu().numpy()
        rewards = self.item_rewards().detach().cpu().numpy()
        recommended = validation_top_k(rewards, self.fold_in[rows], self.settings, self.config.temperature)
        self.validation.add(recommended, self.targets[rows])

    def on_validation_epoch_end(self) -> None:
        self.validation.log(self)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam([self.rewards], lr=self.config.finetune_learning_rate)


def finetune_rewards(user_items: sp.csr_matrix, rewards: np.ndarray, config: PersonaConfig,
                     settings: InferenceSettings, fold_in: sp.csr_matrix, targets: sp.csr_matrix
                     ) -> tuple[np.ndarray, dict[str, float]]:
    """Fine-tuned item rewards (n_items, K) float32 (unit rows with `finetune_cosine`) and the
    training summary (models.persona.training.fit_module, keys prefixed "finetune_").

    user_items (n_users, n_items): the training histories (validation users' fold-in only);
    rewards: the starting r(i) (ALS's, in base coordinates); settings: the inference that
    validation measures; fold_in, targets (n_val, n_items): validation users' histories and
    held-out items (no validation when empty)."""
    with quiet_lightning():
        L.seed_everything(config.seed, workers=True, verbose=False)
    module = SharedSideFinetune(rewards, config, settings, fold_in, targets)
    with torch.no_grad():
        start_rewards = module.item_rewards().numpy().copy()  # (n_items, K), unit rows with cosine
    train_loader = DataLoader(  # one element per batch of users; Lightning shards them over processes
        length_batches(user_items, config.finetune_batch_size, config.seed), batch_size=1, shuffle=True,
        generator=torch.Generator().manual_seed(config.seed),
        collate_fn=lambda batch: padded_histories(user_items, batch[0]),
    )
    val_loader = None
    if fold_in.shape[0]:
        val_loader = DataLoader(torch.arange(fold_in.shape[0]), batch_size=SCORE_BATCH)
    _, summary = fit_module(module, config, config.finetune_epochs, config.finetune_patience, train_loader, val_loader)
    with torch.no_grad():
        tuned = module.item_rewards().detach().cpu().numpy().astype(np.float32)
    if val_loader is not None:  # the start competes too: an epoch that does not beat it on validation is not kept
        start = validation_score(start_rewards, fold_in, targets, settings, config.temperature)
        summary["start_" + VALIDATION_METRIC] = start
        if start >= summary[VALIDATION_METRIC]:
            tuned, summary["best_epoch"] = start_rewards, -1.0
    return tuned, {f"finetune_{key}": value for key, value in summary.items()}


def carve_validation(user_items: sp.csr_matrix, share: float, seed: int
                     ) -> tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]:
    """The training matrix without the validation users' held-out items (n_users, n_items),
    and those users' fold-in and targets (n_val, n_items): `share` of the users, 20% of each
    one's positives as targets (encoder.split_validation_users)."""
    _, val_rows, fold_in, targets = split_validation_users(user_items, share, np.random.default_rng(seed))
    placement = sp.csr_matrix((np.ones(len(val_rows), np.float32), (val_rows, np.arange(len(val_rows)))),
                              shape=(user_items.shape[0], len(val_rows)))
    train = (user_items - placement @ targets).tocsr()
    train.eliminate_zeros()
    return train, fold_in, targets


def finetuned_item_embeddings(user_items: sp.csr_matrix, config: PersonaConfig, settings: InferenceSettings
                              ) -> tuple[np.ndarray, dict[str, float]]:
    """Item embeddings E (n_items, d) float32 of the fine-tuned shared side, and the summary.

    ALS (on the training matrix without the validation targets) gives E0; the bases P0 (K, d)
    (taste_bases, or I with identity bases) give the starting rewards R0 = E0 P0^T; the
    fine-tuned R comes back as E = R P0, embeddings in the span of P0, so the caller's
    taste_bases(E, K) finds that subspace again and only re-rotates it (varimax) for readable
    bases; with K = d every rotation leaves the exact solve's ranking unchanged. With
    popularity_prior "auto" the summary's "popularity_prior" is the eta chosen on the same
    validation users (models.persona.popularity)."""
    train, fold_in, targets = carve_validation(user_items, config.validation_share, config.seed)
    items = als_item_factors(train, config.embedding_dim, config.regularization, config.alpha, config.als_iterations,
                             config.seed)
    bases = np.eye(config.embedding_dim, dtype=np.float32) if config.identity_bases else taste_bases(items, config.n_bases)
    rewards, summary = finetune_rewards(train, items @ bases.T, config, settings, fold_in, targets)
    if config.popularity_prior == "auto":  # same validation users; rotating the bases leaves rankings unchanged
        summary |= choose_popularity_prior(rewards, train, fold_in, targets, settings, config.temperature)[1]
    return (rewards @ bases).astype(np.float32), summary
