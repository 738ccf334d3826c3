"""`recsys-pref bench scale`: training throughput of the encoder on each device, and fold-in speed.

Training: the encoder's training loop (Lightning, the default persona configuration with a
learned item side, every user of the dataset, no validation) runs for a fixed wall-clock
budget on the CPU and, when one is present, on a GPU. A row per device reports the users
processed per second; the GPU row also its ratio to the CPU row of the same run.

Fold-in (issue 11): the persona model's exact inference (M = 2, K = d = 32 by default) and
implicit's `recalculate_user` (ALS with the same 32 factors, fitted on the same data) fold in
the same users' whole histories in the same run, on the CPU, and, when a GPU is present (and
`gpu`), the exact solve on it too; each row reports users per
second (the best of `fold_in_repeats` timed passes, after one warm-up pass: the machine is
shared, the best pass is the least disturbed) and the bytes of state per user in float32.
Run it on a large `synthetic` dataset, e.g. `--synthetic n_users=20000 --synthetic
n_items=10000 --synthetic density=0.005` (about 50 positives per user).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp
import torch

from recsys_pref.bench.results import BenchResult
from recsys_pref.data.dataset import InteractionDataset
from recsys_pref.models import make_model
from recsys_pref.models.persona import PersonaConfig, infer_states, train_network

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
    candidates: list[tuple[str, str, Callable[[sp.csr_matrix], Any], int]] = [
        ("cpu", f"persona exact (M={config.fold_in_personas}, K={dim})", persona.fold_in, persona.state_bytes),
        ("cpu", f"implicit recalculate_user ({dim} factors)", als.fold_in, dim * 4),
    ]
    if config.gpu and torch.cuda.is_available():  # the exact solve alone (no state bounds), on the GPU
        solve_on_gpu = partial(infer_states, rewards=persona.shared.rewards, settings=persona.inference_settings,
                               device="cuda")
        candidates.append(("gpu", f"persona exact solve (M={config.fold_in_personas}, K={dim})", solve_on_gpu,
                           persona.state_bytes))
    common = {"users": users.shape[0], "items": users.shape[1], "positives": users.nnz}
    rows = []
    for device, name, fold_in, state_bytes in candidates:
        seconds = best_seconds(lambda: fold_in(users), config.fold_in_repeats)
        rows.append({"model": name, "device": _device_name(device)} | common |
                    {"fold_in_s": seconds, "fold_in_users_per_s": users.shape[0] / seconds, "state_bytes": state_bytes})
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


# -- issue 14: the batch jobs at 10^4 .. 10^7 users, and batch recommend against implicit's ALS --------
#
# Rows of `bench scale --models batch`. The users are drawn from data.synthetic's planted item
# side by inverse CDF (`planted_users`), streamed to a Parquet log in bounded memory. Each job
# runs in a fresh spawned process through the CLI's own functions (batch.command): job_s is
# its wall time (model load, plan and store included), chunks_s the sum of its chunks' own
# seconds (the steady state: what more users cost). Throughputs divide users by job_s for
# fold-in (the target's "folded in and stored"), and by chunks_s for recommend, compared with
# implicit's ALS `recommend` on the same new users (its model in memory: no load counted).

TRAIN_STREAM = 2**62  # the training users' random stream (the fold-in users' streams are their first ids)
BATCH_FOLD_IN_COLUMNS = ["phase", "users", "items", "interactions", "generate_s", "job_s", "chunks_s",
                         "fold_in_users_per_s", "peak_rss_mib", "store_bytes_per_user", "state_bytes"]
BATCH_RECOMMEND_COLUMNS = ["phase", "model", "users", "items", "train_users", "fit_s", "fit_users_per_s", "k",
                           "job_s", "chunks_s", "recommend_ms_per_user", "speedup_vs_als", "peak_rss_mib",
                           "load_avg_1m"]


@dataclass(frozen=True)
class BatchScaleConfig:
    """fold_in_users: users folded in and stored per row (each in a fresh process, through
    `recsys-pref batch fold-in`'s own function); fold_in_items: the catalog of those rows;
    recommend_items: catalogs of the batch recommend rows; recommend_users: users recommended
    for per catalog (per-user times; the job and ALS serve the same users); recommend_explain:
    the job's `--explain` modes, a row each ("full": explanations, "none": the ranking alone,
    explanation columns null); recommend_threads: the job's `--threads` (None: torch's default;
    ALS keeps its own); train_users: users
    the shared side and ALS are fitted on; positives_per_user: mean history length (Poisson, at
    least 5); chunk_rows: the fold-in job's chunk; seed: the generator's."""

    fold_in_users: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    fold_in_items: int = 20_000
    recommend_items: tuple[int, ...] = (100_000,)
    recommend_users: int = 5_000
    recommend_explain: tuple[str, ...] = ("full", "none")
    recommend_threads: int | None = None
    train_users: int = 20_000
    positives_per_user: int = 20
    chunk_rows: int = 500_000
    seed: int = 0

    @classmethod
    def quick(cls) -> "BatchScaleConfig":
        """The reduced run for tests: small sizes, seconds."""
        return cls(fold_in_users=(2_000,), fold_in_items=500, recommend_items=(800,), recommend_users=300,
                   train_users=1_000, chunk_rows=5_000)


@dataclass(frozen=True)
class PlantedCatalog:
    """The planted item side of `data.synthetic` (its items for this seed): each persona's
    item-choice distribution as a cumulative table (n_personas, n_items), and the item metadata."""

    cumulative: np.ndarray
    items: Any  # polars frame: item_id, title, genres, tags

    @classmethod
    def make(cls, n_items: int, seed: int) -> "PlantedCatalog":
        from recsys_pref.data import make_synthetic

        dataset = make_synthetic(n_users=1, n_items=n_items, density=5 / n_items, seed=seed)
        truth = dataset.ground_truth
        logits = truth.persona_vectors @ truth.item_embeddings.T / 0.1  # make_synthetic's default temperature
        choice = np.exp(logits - logits.max(axis=1, keepdims=True))
        cumulative = np.cumsum(choice / choice.sum(axis=1, keepdims=True), axis=1)
        return cls(cumulative, dataset.items)


def planted_users(catalog: PlantedCatalog, first_user: int, n_users: int, positives_per_user: int,
                  rng: np.random.Generator) -> Any:
    """Interactions (user_id, item_id) of users first_user.. first_user + n_users - 1, sorted by
    user: each mixes 2 of the planted personas with Dirichlet(1) weights and draws about
    `positives_per_user` items (Poisson, at least 5) from the mix of their choice distributions,
    with replacement, repeats dropped. The same story as data.synthetic, drawn by inverse CDF so
    that a chunk costs O(draws log items), not O(users x items): what streams 10^7 users."""
    import polars as pl

    n_personas = catalog.cumulative.shape[0]
    chosen = np.argsort(rng.random((n_users, n_personas)), axis=1)[:, :2]  # (n, 2) each user's personas
    weights = rng.dirichlet(np.ones(2), size=n_users)  # (n, 2)
    counts = np.maximum(rng.poisson(positives_per_user, size=n_users), 5)
    owner = np.repeat(np.arange(n_users), counts)  # (draws,)
    second = rng.random(len(owner)) > weights[owner, 0]
    persona = chosen[owner, second.astype(np.int64)]
    items = np.empty(len(owner), np.int64)
    for k in range(n_personas):
        mask = persona == k
        items[mask] = np.searchsorted(catalog.cumulative[k], rng.random(int(mask.sum())) * catalog.cumulative[k, -1])
    frame = pl.DataFrame({"user_id": owner.astype(np.int64) + first_user, "item_id": np.minimum(items, catalog.cumulative.shape[1] - 1)})
    return frame.unique(maintain_order=True)


def write_planted_log(path: Any, catalog: PlantedCatalog, n_users: int, positives_per_user: int, seed: int,
                      chunk_users: int = 100_000) -> int:
    """Stream `n_users` planted users into a Parquet file sorted by user, `chunk_users` at a
    time (memory bounded by the chunk); returns the rows written."""
    import pyarrow.parquet as pq

    rows, writer = 0, None
    try:
        for start in range(0, n_users, chunk_users):
            rng = np.random.default_rng((seed, start))
            table = planted_users(catalog, start, min(chunk_users, n_users - start), positives_per_user, rng).to_arrow()
            writer = writer or pq.ParquetWriter(str(path), table.schema)
            writer.write_table(table, row_group_size=1 << 18)
            rows += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    return rows


def _peak_rss_mib() -> float:
    """This process's peak resident set size so far, MiB (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _fold_in_child(model_dir: str, log: str, work: str, chunk_rows: int, queue: Any) -> None:
    """In a fresh process: the fold-in job on `log` into a new SQLite store; its wall time,
    totals, peak RSS and the store's bytes."""
    import os

    from recsys_pref.batch.command import Run, fold_in_file

    try:
        store = os.path.join(work, "profiles.sqlite")
        started = time.perf_counter()
        totals = fold_in_file(Path(model_dir), Path(log), f"sqlite:///{store}", Run(progress=False), Path(work) / "work",
                              chunk_rows)
        seconds = time.perf_counter() - started
        import sqlite3

        with sqlite3.connect(store) as connection:  # the WAL folded into the file: its bytes are the store's
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        queue.put({"job_s": seconds, "chunks_s": totals["seconds"], "users_stored": totals.get("users", 0),
                   "peak_rss_mib": _peak_rss_mib(), "store_bytes": os.path.getsize(store)})
    except BaseException as error:  # reported as the row's error, not lost with the child
        queue.put({"error": f"{type(error).__name__}: {error}"})


def _in_child(target: Callable[..., None], *args: Any) -> dict[str, Any]:
    """Run target(*args, queue) in a fresh spawned process; its one reported dict."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=target, args=(*args, queue))
    child.start()
    child.join()
    return queue.get() if not queue.empty() else {"error": f"child exited with code {child.exitcode}"}


def fit_planted_model(directory: Path, catalog: PlantedCatalog, config: BatchScaleConfig, persona: PersonaConfig
                      ) -> tuple[Any, sp.csr_matrix, float]:
    """The persona pipeline fitted on `train_users` planted users and saved in `directory`; the
    training histories and the fit's seconds (the shared side: ALS + bases + population prior)."""
    import polars as pl

    from recsys_pref.data.dataset import IdMap, InteractionDataset
    from recsys_pref.pipeline import PersonaPipeline

    n_items = catalog.cumulative.shape[1]
    rows = planted_users(catalog, 0, config.train_users, config.positives_per_user,
                         np.random.default_rng((config.seed, TRAIN_STREAM)))
    dataset = InteractionDataset("synthetic-planted", rows.with_columns(rating=pl.lit(1.0), timestamp=pl.lit(0, pl.Int64)),
                                 catalog.items, IdMap(np.arange(config.train_users), "user"),
                                 IdMap(np.arange(n_items), "item"))
    started = time.perf_counter()
    pipeline = PersonaPipeline.fit(dataset, persona)
    fit_s = time.perf_counter() - started
    pipeline.save(directory)
    return pipeline, dataset.to_csr(), fit_s


def batch_fold_in_rows(model_dir: Path, catalog: PlantedCatalog, config: BatchScaleConfig, state_bytes: int,
                       scratch: Path) -> list[dict[str, Any]]:
    """A row per size: N planted users streamed to a sorted Parquet log, then folded in and
    stored by the batch job in a fresh process (its peak RSS is the job's alone)."""
    rows = []
    for n_users in config.fold_in_users:
        log, work = scratch / f"log-{n_users}.parquet", scratch / f"fold-in-{n_users}"
        work.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        interactions = write_planted_log(log, catalog, n_users, config.positives_per_user, config.seed)
        row: dict[str, Any] = {"phase": "batch fold-in + store", "users": n_users, "items": catalog.cumulative.shape[1],
                               "interactions": interactions, "generate_s": time.perf_counter() - started,
                               "state_bytes": state_bytes}
        measured = _in_child(_fold_in_child, str(model_dir), str(log), str(work), config.chunk_rows)
        if "error" not in measured:
            measured |= {"fold_in_users_per_s": measured["users_stored"] / measured["job_s"],
                         "store_bytes_per_user": measured.pop("store_bytes") / max(measured["users_stored"], 1)}
        rows.append(row | measured)
        log.unlink()
    return rows


def _recommend_child(model_dir: str, log: str, work: str, explain: tuple[str, ...], threads: int | None,
                     queue: Any) -> None:
    """In a fresh process: fold `log` in (untimed), then the recommend job over every stored
    user once per `explain` mode (timed: the job's wall time, pipeline load and index build
    included); per mode its measurement, or the error."""
    import os

    from recsys_pref.batch.command import Run, fold_in_file, recommend_stored

    try:
        store = f"sqlite:///{os.path.join(work, 'profiles.sqlite')}"
        fold_in_file(Path(model_dir), Path(log), store, Run(progress=False), Path(work) / "work")
        measured = {}
        for mode in explain:
            started = time.perf_counter()
            totals = recommend_stored(Path(model_dir), "all", Path(work) / f"out-{mode}", store, Run(progress=False),
                                      k=10, explain=mode, threads=threads)
            measured[mode] = {"job_s": time.perf_counter() - started, "chunks_s": totals["seconds"],
                              "users": totals.get("users", 0), "peak_rss_mib": _peak_rss_mib(),
                              "load_avg_1m": os.getloadavg()[0]}
        queue.put(measured)
    except BaseException as error:  # reported as the rows' error
        queue.put({"error": f"{type(error).__name__}: {error}"})


def als_recommend_seconds(train: sp.csr_matrix, users: sp.csr_matrix, factors: int, iterations: int,
                          regularization: float, alpha: float, seed: int) -> tuple[float, float]:
    """implicit's ALS fitted on `train` (its fit seconds), then `recommend` top-10 for the new
    `users` (their factors from `recalculate_user`, untimed; already-liked items filtered, the
    whole batch in one call): its seconds."""
    from implicit.cpu.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(factors=factors, regularization=regularization, alpha=alpha,
                                    iterations=iterations, random_state=seed)
    started = time.perf_counter()
    model.fit(train, show_progress=False)
    fit_s = time.perf_counter() - started
    model.user_factors = model.recalculate_user(np.arange(users.shape[0]), users)
    started = time.perf_counter()
    model.recommend(np.arange(users.shape[0]), users, N=10, filter_already_liked_items=True)
    return fit_s, time.perf_counter() - started


def batch_recommend_rows(catalog: PlantedCatalog, config: BatchScaleConfig, persona: PersonaConfig,
                         scratch: Path) -> list[dict[str, Any]]:
    """Per catalog: the shared side's fit (training throughput on the CPU), then top-10 for the
    same new users by the batch recommend job (once per `recommend_explain` mode) and by
    implicit's ALS `recommend` with the same factors, in the same run; each row with the
    1-minute load average when it finished (the machine may be shared)."""
    import os

    n_items = catalog.cumulative.shape[1]
    directory = scratch / f"model-{n_items}"
    _, train, fit_s = fit_planted_model(directory, catalog, config, persona)
    log, work = scratch / f"users-{n_items}.parquet", scratch / f"recommend-{n_items}"
    work.mkdir(parents=True, exist_ok=True)
    first = config.train_users  # new users: ids after the training users'
    frame = planted_users(catalog, first, config.recommend_users, config.positives_per_user,
                          np.random.default_rng((config.seed, first)))
    frame.write_parquet(log)
    users = sp.csr_matrix((np.ones(frame.height, np.float32), (frame["user_id"].to_numpy() - first,
                                                               frame["item_id"].to_numpy())),
                          shape=(config.recommend_users, n_items))
    ours = _in_child(_recommend_child, str(directory), str(log), str(work), config.recommend_explain,
                     config.recommend_threads)
    als_fit_s, als_s = als_recommend_seconds(train, users, persona.embedding_dim, persona.als_iterations,
                                             persona.regularization, persona.alpha, persona.seed)
    common = {"phase": "batch recommend top-10", "items": n_items, "train_users": config.train_users, "k": 10,
              "users": config.recommend_users}
    als_row = common | {"model": f"implicit ALS recommend ({persona.embedding_dim} factors)", "fit_s": als_fit_s,
                        "fit_users_per_s": config.train_users / als_fit_s, "chunks_s": als_s,
                        "recommend_ms_per_user": 1000 * als_s / config.recommend_users,
                        "load_avg_1m": os.getloadavg()[0]}
    our_rows = []
    thread_note = "" if config.recommend_threads is None else f", --threads {config.recommend_threads}"
    for mode in config.recommend_explain:
        measured = ours.get(mode, {"error": ours.get("error", "not run")})
        name = f"persona batch recommend job (M={persona.n_personas}, K={persona.n_bases}, --explain {mode}{thread_note})"
        row = common | {"model": name, "fit_s": fit_s, "fit_users_per_s": config.train_users / fit_s}
        if "error" not in measured:
            measured = measured | {"recommend_ms_per_user": 1000 * measured["chunks_s"] / config.recommend_users,
                                   "speedup_vs_als": als_s / measured["chunks_s"]}
        our_rows.append(row | measured)
    return [*our_rows, als_row]


def run_batch_scale(config: BatchScaleConfig, persona: PersonaConfig | None = None) -> BenchResult:
    """`bench scale --models batch`: the fold-in job at each size and batch recommend per catalog
    (module docstring of this section: BatchScaleConfig)."""
    import tempfile

    persona = persona or PersonaConfig(progress=False)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as scratch:
        if config.fold_in_users:
            catalog = PlantedCatalog.make(config.fold_in_items, config.seed)
            model_dir = Path(scratch) / "model"
            pipeline, _, _ = fit_planted_model(model_dir, catalog, config, persona)
            rows += batch_fold_in_rows(model_dir, catalog, config, pipeline.model.state_bytes, Path(scratch))
        for n_items in config.recommend_items:
            rows += batch_recommend_rows(PlantedCatalog.make(n_items, config.seed), config, persona, Path(scratch))
    columns = BATCH_FOLD_IN_COLUMNS + [name for name in BATCH_RECOMMEND_COLUMNS if name not in BATCH_FOLD_IN_COLUMNS]
    return BenchResult(suite="scale", dataset="synthetic (planted personas, streamed)",
                       protocol="batch jobs: new users folded in and stored; top-10 for new users",
                       config={"batch": asdict(config), "persona": asdict(persona)}, rows=rows,
                       columns=columns + (["error"] if any("error" in row for row in rows) else []))


def batch_scale_configs(quick: bool, overrides: dict[str, Any]) -> tuple[BatchScaleConfig, PersonaConfig]:
    """The batch rows' settings: `--set` keys of BatchScaleConfig go there (lists as tuples, e.g.
    --set fold_in_users=[10000,10000000]), the rest to the persona model."""
    from dataclasses import fields, replace

    batch_fields = {field.name for field in fields(BatchScaleConfig)}
    batch = replace(BatchScaleConfig.quick() if quick else BatchScaleConfig(),
                    **{key: tuple(value) if isinstance(value, list) else value
                       for key, value in overrides.items() if key in batch_fields})
    persona = PersonaConfig(**({"progress": False} | ({"als_iterations": 3} if quick else {}) |
                               {key: value for key, value in overrides.items() if key not in batch_fields}))
    return batch, persona
