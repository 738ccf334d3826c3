"""Peak memory of fitting the persona model and building its serving state, at scale (issue 16).

Issue 16 found `fit` on 100k users x 20k items (2M interactions) killed at 20.8 GB: the
population prior folded in every user at once into one dense (n_users, n_items) matrix. Every
path over all users now works in blocks (fold-in, the population prior, catalog scoring,
persona descriptions), so memory is bounded by block x catalog, not users x catalog.

Each size runs in a fresh child process (spawned, so no memory is inherited from the parent)
that reports its own peak resident set size (`resource.getrusage(RUSAGE_SELF).ru_maxrss`,
monotonic) after each phase:

- data: the synthetic dataset generated (planted personas, ~`positives_per_user` each);
- fit: `PersonaRecommender.fit` on the positives (the shared side: ALS and varimax bases);
- serving: `PersonaPipeline.from_model`: the population prior folded in over every user in
  blocks, the id maps, histories and seen items;
- recommend: top-10 with explanations for `recommend_users` known users.

A row per size: users, items, interactions, the phase times (seconds) and the peak RSS after
each phase (MiB, the whole process: Python, torch and the data included), plus the dense
(users x items float32) matrix the old code allocated, for scale.
"""
from __future__ import annotations

import multiprocessing
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from recsys_pref.bench.results import BenchResult

SIZES = ((100_000, 20_000), (1_000_000, 20_000))
COLUMNS = ["users", "items", "interactions", "data_s", "fit_s", "serving_state_s", "recommend_s",
           "peak_data_mib", "peak_fit_mib", "peak_serving_mib", "peak_recommend_mib", "dense_matrix_mib"]


@dataclass(frozen=True)
class ServingMemoryConfig:
    """sizes: (users, items) per row; positives_per_user: the synthetic generator's mean history
    length (20 gives issue 16's 2M interactions at 100k users); persona: PersonaConfig
    overrides (defaults otherwise, progress off); recommend_users: users served in the last
    phase; seed: the generator's seed."""

    sizes: tuple[tuple[int, int], ...] = SIZES
    positives_per_user: int = 20
    persona: dict[str, Any] = field(default_factory=dict)
    recommend_users: int = 1000
    seed: int = 0

    @classmethod
    def quick(cls) -> "ServingMemoryConfig":
        """The reduced run for tests: one small size and a short training."""
        return cls(sizes=((2000, 500),), persona={"als_iterations": 2}, recommend_users=100)


def _peak_mib() -> float:
    """This process's peak resident set size so far, in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def measure_size(n_users: int, n_items: int, config: ServingMemoryConfig) -> dict[str, Any]:
    """One row, measured in this process (run it in a fresh one: see `serving_memory_rows`)."""
    from recsys_pref.data import make_synthetic
    from recsys_pref.models.persona import PersonaConfig, PersonaRecommender
    from recsys_pref.pipeline import PersonaPipeline

    row: dict[str, Any] = {"users": n_users, "items": n_items}
    started = time.perf_counter()
    dataset = make_synthetic(n_users=n_users, n_items=n_items, density=config.positives_per_user / n_items,
                             seed=config.seed)
    histories = dataset.to_csr()
    row |= {"interactions": dataset.interactions.height, "data_s": time.perf_counter() - started,
            "peak_data_mib": _peak_mib()}
    started = time.perf_counter()
    model = PersonaRecommender(PersonaConfig(**({"progress": False} | config.persona))).fit(histories)
    row |= {"fit_s": time.perf_counter() - started, "peak_fit_mib": _peak_mib()}
    started = time.perf_counter()
    pipeline = PersonaPipeline.from_model(model, dataset, histories, dataset.to_csr(dataset.interactions))
    row |= {"serving_state_s": time.perf_counter() - started, "peak_serving_mib": _peak_mib()}
    started = time.perf_counter()
    pipeline.recommend(dataset.user_ids.to_list()[: config.recommend_users], k=10)
    row |= {"recommend_s": time.perf_counter() - started, "peak_recommend_mib": _peak_mib(),
            "dense_matrix_mib": n_users * n_items * 4 / (1 << 20)}
    return row


def _child(n_users: int, n_items: int, config: ServingMemoryConfig, queue: multiprocessing.Queue) -> None:
    try:
        queue.put(measure_size(n_users, n_items, config))
    except BaseException as error:  # reported as the row's error, not lost with the child
        queue.put({"users": n_users, "items": n_items, "error": f"{type(error).__name__}: {error}"})


def serving_memory_rows(config: ServingMemoryConfig = ServingMemoryConfig()) -> list[dict[str, Any]]:
    """A row per size, each measured in a fresh spawned child process; a child that dies (the
    OOM killer, say) gives a row with its exit code as the error."""
    context = multiprocessing.get_context("spawn")
    rows = []
    for n_users, n_items in config.sizes:
        queue = context.Queue()
        child = context.Process(target=_child, args=(n_users, n_items, config, queue))
        child.start()
        child.join()
        rows.append(queue.get() if not queue.empty() else
                    {"users": n_users, "items": n_items, "error": f"child exited with code {child.exitcode}"})
    return rows


def run_serving_memory(dataset_name: str = "synthetic", quick: bool = False) -> BenchResult:
    """The `bench scale` rows for fit + serving state at scale (the dataset is always synthetic,
    generated at each size inside the child)."""
    config = ServingMemoryConfig.quick() if quick else ServingMemoryConfig()
    return BenchResult("scale", dataset_name, "fit + serving state in a fresh process per size",
                       {"serving_memory": {"sizes": [list(size) for size in config.sizes],
                                           "positives_per_user": config.positives_per_user,
                                           "persona": config.persona, "recommend_users": config.recommend_users}},
                       serving_memory_rows(config), COLUMNS)
