"""`recsys-pref bench scale`: training throughput of the persona model on each device.

The same training loop (Lightning, the default persona configuration, every user of the
dataset, no validation) runs for a fixed wall-clock budget on the CPU and, when one is
present, on a GPU. A row per device reports the users processed per second; the GPU row
also its ratio to the CPU row of the same run. Run it on a large `synthetic` dataset, e.g.
`--synthetic n_users=100000 --synthetic n_items=20000`.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

from recsys_pref.bench.results import BenchResult
from recsys_pref.data.dataset import InteractionDataset
from recsys_pref.models.persona import PersonaConfig, train_network

COLUMNS = ["device", "users", "items", "positives", "batch_size", "steps", "epochs", "train_s", "users_per_s",
           "speedup_vs_cpu"]


@dataclass(frozen=True)
class ScaleBenchConfig:
    """seconds: training time box per device; batch_size: users per step (the same on every
    device); gpu: also measure a GPU (skipped, with a row saying so, when none is present)."""

    seconds: float = 45.0
    batch_size: int = 512
    gpu: bool = True

    @classmethod
    def quick(cls) -> "ScaleBenchConfig":
        """The reduced run used by tests: two seconds on the CPU only."""
        return cls(seconds=2.0, batch_size=64, gpu=False)


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


def run_scale(dataset: InteractionDataset, config: ScaleBenchConfig) -> BenchResult:
    """The scale suite on `dataset` (see the module docstring)."""
    rows = [measure_throughput(dataset, "cpu", config)]
    if config.gpu and torch.cuda.is_available():
        gpu = measure_throughput(dataset, "gpu", config)
        rows.append(gpu | {"speedup_vs_cpu": gpu["users_per_s"] / rows[0]["users_per_s"]})
    elif config.gpu:
        rows.append({"device": "gpu", "skipped": "no CUDA device is visible to torch"})
    return BenchResult(suite="scale", dataset=dataset.name, protocol="all users, no validation",
                       config=asdict(config) | {"dataset_summary": dataset.summary()}, rows=rows,
                       columns=COLUMNS + (["skipped"] if any("skipped" in row for row in rows) else []))
