"""`recsys-pref bench scale`: training throughput of the encoder on each device, and fold-in speed.

Training: the encoder's training loop (Lightning, the default persona configuration with a
learned item side, every user of the dataset, no validation) runs for a fixed wall-clock
budget on the CPU and, when one is present, on a GPU. A row per device reports the users
processed per second; the GPU row also its ratio to the CPU row of the same run.

Fold-in (issue 11): the persona model's exact inference (M = 2, K = d = 32 by default) and
implicit's `recalculate_user` (ALS with the same 32 factors, fitted on the same data) fold in
the same users' whole histories in the same run, on the CPU; each row reports users per
second (the best of `fold_in_repeats` timed passes, after one warm-up pass: the machine is
shared, the best pass is the least disturbed) and the bytes of state per user in float32.
Run it on a large `synthetic` dataset, e.g. `--synthetic n_users=20000 --synthetic
n_items=10000 --synthetic density=0.005` (about 50 positives per user).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp
import torch

from recsys_pref.bench.results import BenchResult
from recsys_pref.data.dataset import InteractionDataset
from recsys_pref.models import make_model
from recsys_pref.models.persona import PersonaConfig, train_network

COLUMNS = ["device", "users", "items", "positives", "batch_size", "steps", "epochs", "train_s", "users_per_s",
           "speedup_vs_cpu"]
FOLD_IN_COLUMNS = ["model", "device", "users", "items", "positives", "fold_in_s", "fold_in_users_per_s",
                   "state_bytes"]


@dataclass(frozen=True)
class ScaleBenchConfig:
    """seconds: training time box per device; batch_size: users per step (the same on every
    device); gpu: also measure a GPU (skipped, with a row saying so, when none is present).
    fold_in_personas, fold_in_bases: M and K = d of the fold-in rows (ALS gets d factors);
    fold_in_users: the first users with a history folded in; fold_in_repeats: timed passes."""

    seconds: float = 45.0
    batch_size: int = 512
    gpu: bool = True
    fold_in_personas: int = 2
    fold_in_bases: int = 32
    fold_in_users: int = 20000
    fold_in_repeats: int = 3

    @classmethod
    def quick(cls) -> "ScaleBenchConfig":
        """The reduced run used by tests: two seconds on the CPU only, one timed fold-in pass."""
        return cls(seconds=2.0, batch_size=64, gpu=False, fold_in_users=500, fold_in_repeats=1)


def _device_name(accelerator: str) -> str:
    if accelerator == "gpu":
        return torch.cuda.get_device_name(0)
    return f"cpu ({torch.get_num_threads()} threads)"


def users_processed(steps: int, n_users: int, batch_size: int) -> int:
    """Users seen in `steps` optimiser steps: full epochs, then full batches of the next one
    (an epoch's last batch is the remainder)."""
    steps_per_epoch = -(-n_users // batch_size)
    full_epochs, extra_steps = divmod(steps, steps_per_epoch)
    return full_epochs * n_users + extra_steps * batch_size


def measure_throughput(dataset: InteractionDataset, accelerator: str, config: ScaleBenchConfig) -> dict[str, Any]:
    """Train for `config.seconds` on `accelerator` ("cpu" or "gpu"); users per second."""
    user_items = dataset.to_csr()
    persona = PersonaConfig(accelerator=accelerator, batch_size=config.batch_size, validation_share=0.0,
                            max_epochs=10**6, max_seconds=config.seconds, progress=False)
    started = time.perf_counter()
    _, summary = train_network(user_items, persona)
    train_s = time.perf_counter() - started
    users = users_processed(int(summary["steps"]), user_items.shape[0], config.batch_size)
    return {
        "device": _device_name(accelerator), "users": user_items.shape[0], "items": user_items.shape[1],
        "positives": user_items.nnz, "batch_size": config.batch_size, "steps": summary["steps"],
        "epochs": users / user_items.shape[0], "train_s": train_s, "users_per_s": users / train_s,
    }


def best_seconds(run: Callable[[], Any], repeats: int) -> float:
    """The shortest wall time of `repeats` calls of `run`, after one untimed warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def measure_fold_in(dataset: InteractionDataset, config: ScaleBenchConfig) -> list[dict[str, Any]]:
    """Fold-in speed of the persona model's exact inference and of implicit's recalculate_user
    on the same histories (module docstring): one row each."""
    user_items = dataset.to_csr()
    users = user_items[np.flatnonzero(np.diff(user_items.indptr) > 0)[: config.fold_in_users]]
    dim = config.fold_in_bases
    persona = make_model("persona", n_personas=config.fold_in_personas, n_bases=dim, embedding_dim=dim).fit(user_items)
    als = make_model("als", factors=dim).fit(user_items)
    candidates: list[tuple[str, Callable[[sp.csr_matrix], Any], int]] = [
        (f"persona exact (M={config.fold_in_personas}, K={dim})", persona.fold_in, persona.state_bytes),
        (f"implicit recalculate_user ({dim} factors)", als.fold_in, dim * 4),
    ]
    common = {"device": _device_name("cpu"), "users": users.shape[0], "items": users.shape[1], "positives": users.nnz}
    rows = []
    for name, fold_in, state_bytes in candidates:
        seconds = best_seconds(lambda: fold_in(users), config.fold_in_repeats)
        rows.append({"model": name} | common | {"fold_in_s": seconds, "fold_in_users_per_s": users.shape[0] / seconds,
                                                "state_bytes": state_bytes})
    return rows


def run_scale(dataset: InteractionDataset, config: ScaleBenchConfig) -> BenchResult:
    """The scale suite on `dataset` (see the module docstring)."""
    rows = [measure_throughput(dataset, "cpu", config)]
    if config.gpu and torch.cuda.is_available():
        gpu = measure_throughput(dataset, "gpu", config)
        rows.append(gpu | {"speedup_vs_cpu": gpu["users_per_s"] / rows[0]["users_per_s"]})
    elif config.gpu:
        rows.append({"device": "gpu", "skipped": "no CUDA device is visible to torch"})
    rows += measure_fold_in(dataset, config)
    columns = COLUMNS + [column for column in FOLD_IN_COLUMNS if column not in COLUMNS]
    return BenchResult(suite="scale", dataset=dataset.name, protocol="all users, no validation",
                       config=asdict(config) | {"dataset_summary": dataset.summary()}, rows=rows,
                       columns=columns + (["skipped"] if any("skipped" in row for row in rows) else []))
