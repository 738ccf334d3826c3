"""The one Lightning harness of the persona model's gradient-trained parts.

The amortized encoder (models.persona.encoder) and the softmax fine-tune of the shared side
(models.persona.finetune) both train through `fit_module`: one Trainer built from the config's
`accelerator`, `strategy` and `devices`, early stopping on validation NDCG@100 and the best
epoch's weights kept in memory. So `strategy="ddp", devices=2` trains either over two processes
(gloo on CPU, NCCL on GPUs) with the same code.

Multi-process correctness (DDP):
- training batches are sharded by the DistributedSampler Lightning injects (each process a
  disjoint part of the users per epoch; gradients are averaged, so the effective batch is
  `devices` x batch_size);
- the validation metric is a sum and a count of per-user NDCG reduced over the processes
  (`ValidationNdcg`), so every process logs the same value (the sampler pads the last shard with
  at most devices - 1 repeated users), and early stopping and the kept epoch agree everywhere;
- the best weights are loaded back into the module at the end of fit (`KeepBestWeights`), so
  every process ends with the same weights, and spawn-type launchers ("ddp_spawn"), which hand
  rank 0's module back to the calling process, return the best epoch rather than the last.
With Lightning's script launcher ("ddp") the whole command runs once per process; callers that
write files do so on rank 0 only (`is_global_zero`).
"""
from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from datetime import timedelta
from typing import Iterator

import lightning as L
import numpy as np
import scipy.sparse as sp
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import Callback, EarlyStopping
from torch import Tensor
from torch.utils.data import DataLoader

from recsys_pref.core.metrics import ndcg_at_k
from recsys_pref.models.persona.config import PersonaConfig

VALIDATION_METRIC = "val_ndcg@100"
VALIDATION_K = 100


class ValidationNdcg:
    """NDCG@100 over the validation users of one epoch, summed over every process."""

    def __init__(self) -> None:
        self.total, self.users = 0.0, 0

    def reset(self) -> None:
        self.total, self.users = 0.0, 0

    def add(self, recommended: np.ndarray, targets: sp.csr_matrix) -> None:
        """recommended (B, >= 100) item ids (-1 pads), targets (B, n_items) held-out positives."""
        ndcg = ndcg_at_k(recommended, targets, VALIDATION_K)
        self.total += float(np.nansum(ndcg))
        self.users += int(np.isfinite(ndcg).sum())

    def log(self, module: L.LightningModule) -> None:
        """Log the mean over all processes' users as VALIDATION_METRIC (the same on every rank)."""
        sums = torch.tensor([self.total, float(self.users)], dtype=torch.float64, device=module.device)
        if module.trainer.world_size > 1:
            sums = module.trainer.strategy.reduce(sums, reduce_op="sum")
        module.log(VALIDATION_METRIC, float(sums[0] / sums[1].clamp_min(1)), prog_bar=True)


class KeepBestWeights(Callback):
    """Keeps a copy of the module's weights at the best validation NDCG@100 (in memory) and
    loads it back into the module when fit ends (on every process: they all saw the same
    reduced metric)."""

    def __init__(self) -> None:
        self.best_score = -np.inf
        self.best_epoch = -1
        self.best_state: dict[str, Tensor] | None = None

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        score = float(trainer.callback_metrics[VALIDATION_METRIC])
        if score > self.best_score:
            self.best_score, self.best_epoch = score, trainer.current_epoch
            self.best_state = copy.deepcopy(module.state_dict())

    def on_fit_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self.best_state is not None:
            module.load_state_dict(self.best_state)


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
        warnings.filterwarnings("ignore", message=".*sync_dist=True.*")  # ValidationNdcg reduces its own sums
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def is_global_zero() -> bool:
    """False in the extra processes Lightning's "ddp" script launcher starts (they rerun the
    whole command); True everywhere else. Only rank 0 writes results."""
    return getattr(rank_zero_only, "rank", 0) == 0


def fit_module(module: L.LightningModule, config: PersonaConfig, max_epochs: int, patience: int,
               train_loader: DataLoader, val_loader: DataLoader | None) -> tuple[KeepBestWeights, dict[str, float]]:
    """Train `module` with the config's accelerator, strategy and devices; early stopping on
    VALIDATION_METRIC (when `val_loader` is given) with the best epoch's weights loaded back.

    Returns the KeepBestWeights callback and a summary: "best_epoch" (0-based epoch whose
    weights were kept; -1 without validation), "epochs" (epochs run), "steps" (optimiser steps
    taken) and VALIDATION_METRIC (at the best epoch; NaN without validation)."""
    keep_best = KeepBestWeights()
    callbacks: list[Callback] = []
    if val_loader is not None:
        callbacks = [EarlyStopping(VALIDATION_METRIC, mode="max", patience=patience), keep_best]
    deterministic_before = (torch.are_deterministic_algorithms_enabled(),
                            torch.is_deterministic_algorithms_warn_only_enabled())
    with quiet_lightning():
        trainer = L.Trainer(
            accelerator=config.accelerator, strategy=config.strategy, devices=config.devices,
            max_epochs=max_epochs, logger=False,
            max_time=None if config.max_seconds is None else timedelta(seconds=config.max_seconds),
            enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=config.progress,
            num_sanity_val_steps=0, callbacks=callbacks,
            deterministic=True if config.accelerator == "cpu" else "warn",
        )
        try:
            trainer.fit(module, train_loader, val_loader)
        finally:  # Lightning sets the global flag; leave it as it was
            torch.use_deterministic_algorithms(deterministic_before[0], warn_only=deterministic_before[1])
    summary = {"best_epoch": float(keep_best.best_epoch), "epochs": float(trainer.current_epoch),
               "steps": float(trainer.global_step),
               VALIDATION_METRIC: float(keep_best.best_score) if val_loader is not None else float("nan")}
    return keep_best, summary
