"""`recsys-pref batch fold-in|recommend`: options, checks of every input, then the engine.

Every input is checked before the first chunk runs (the Ray address first, within seconds):
the interaction file's columns and types, the store's model, the users' profiles. A rerun of
the same command resumes: the ledger (in --work-dir for fold-in, in --out for recommend) skips
the chunks already finished.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_CHUNK_ROWS = 500_000  # fold-in: interaction rows per chunk (memory: about 100 bytes a row)
DEFAULT_CHUNK_USERS = 20_000  # recommend: users per chunk
EXPLAIN_CHOICES = ("full", "none")  # recommend: explanation columns filled, or null


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _add_engine_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="artifact directory written by `recsys-pref fit`")
    parser.add_argument("--store", default=None, metavar="URL",
                        help="SQLAlchemy URL of the profile store (default: sqlite:///DIR.profiles.sqlite, the "
                             "service's default)")
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="local: this process; ray: Ray Data map_batches over the chunks")
    parser.add_argument("--workers", type=_positive_int, default=2, help="Ray actors (and CPUs of a local Ray)")
    parser.add_argument("--ray-address", default=None,
                        help="join this Ray cluster (host:port, ray://host:10001 or auto) instead of starting one")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_batch_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `batch fold-in` and `batch recommend` on the CLI's subparsers."""
    batch = subparsers.add_parser("batch", help="fold in or recommend for a whole user base, resumable, local or on Ray")
    jobs = batch.add_subparsers(dest="job", required=True)
    fold_in = jobs.add_parser("fold-in", help="store the state of every user of an interaction log")
    _add_engine_options(fold_in)
    fold_in.add_argument("--interactions", type=Path, required=True,
                         help="Parquet/CSV with user_id, item_id [, rating, timestamp]")
    fold_in.add_argument("--positive-threshold", type=float, default=None,
                         help="only rows with rating >= this are positives (default: every row)")
    fold_in.add_argument("--chunk-rows", type=_positive_int, default=DEFAULT_CHUNK_ROWS,
                         help="interaction rows per chunk (a chunk never splits a user)")
    fold_in.add_argument("--work-dir", type=Path, default=None,
                         help="ledger and sorted copy of the input (default: FILE.fold-in beside the file)")
    fold_in.set_defaults(handler=fold_in_main)
    recommend = jobs.add_parser("recommend", help="top-k for stored users as partitioned Parquet")
    _add_engine_options(recommend)
    recommend.add_argument("--users", required=True, help="a users file (user_id column, or one id per line), or all")
    recommend.add_argument("--k", type=_positive_int, default=10, help="recommendations per user")
    recommend.add_argument("--out", type=Path, required=True, help="directory of part-NNNNN.parquet files")
    recommend.add_argument("--chunk-users", type=_positive_int, default=DEFAULT_CHUNK_USERS, help="users per chunk")
    recommend.add_argument("--explain", choices=EXPLAIN_CHOICES, default="full",
                           help="full: the pipeline's explanation columns; none: the same schema with them null "
                                "(the ranking alone, faster)")
    recommend.add_argument("--threads", type=_positive_int, default=None,
                           help="torch threads per worker process (default: torch's choice; 1 is much faster on a "
                                "machine other jobs keep busy, BENCHMARKS.md issue 14)")
    recommend.set_defaults(handler=recommend_main)
    return batch


@dataclass(frozen=True)
class Run:
    """Where and how a job's chunks run (batch.engines.run_chunks)."""

    engine: str = "local"
    workers: int = 2
    ray_address: str | None = None
    progress: bool = True


def _run_of(args: argparse.Namespace) -> Run:
    return Run(args.engine, args.workers, args.ray_address, not args.no_progress)


def _open_model(model_dir: Path, store: str | None, run: Run) -> tuple[Any, str, str]:
    """(pipeline, model hash, store URL), after checking the Ray address answers."""
    from recsys_pref.batch.engines import check_reachable

    if run.engine == "ray" and run.ray_address:
        check_reachable(run.ray_address)
    from recsys_pref.pipeline import PersonaPipeline
    from recsys_pref.service.engine import artifact_hash
    from recsys_pref.service.store import default_store_url

    pipeline = PersonaPipeline.load(model_dir)
    return pipeline, artifact_hash(model_dir), store or default_store_url(model_dir)


def fold_in_file(model_dir: Path, interactions: Path, store: str | None = None, run: Run = Run(),
                 work_dir: Path | None = None, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                 positive_threshold: float | None = None) -> dict[str, Any]:
    """The fold-in job (batch.fold_in) after checking every input; the ledger's totals and the
    store URL. ChunkError (batch.engines) when chunks failed."""
    from recsys_pref.batch.engines import run_chunks
    from recsys_pref.batch.fold_in import FoldInJob
    from recsys_pref.batch.ledger import ChunkLedger
    from recsys_pref.batch.source import InputError, check_schema, fingerprint, id_dtype, scan, sorted_chunks
    from recsys_pref.service.store import ProfileStore

    pipeline, model_hash, store_url = _open_model(model_dir, store, run)
    frame = scan(interactions)
    check_schema(frame, interactions, id_dtype(pipeline.item_ids.external))
    if positive_threshold is not None and "rating" not in frame.collect_schema():
        raise InputError(f"{interactions}: --positive-threshold needs a rating column")
    work_dir = work_dir or interactions.with_name(interactions.name + ".fold-in")
    path, chunks = sorted_chunks(interactions, work_dir, chunk_rows)
    profile_store = ProfileStore(store_url, pipeline.model.config.state_size)
    profile_store.check_model(model_hash)  # claims a new store; StoreError for another model's
    profile_store.close()
    plan = [chunk.to_dict() for chunk in chunks]
    identity = {"job": "fold-in", "input": fingerprint(interactions), "model": model_hash, "store": store_url,
                "chunk_rows": chunk_rows, "positive_threshold": positive_threshold}
    ledger = ChunkLedger.open(work_dir, identity, plan)
    job = FoldInJob(model_dir, path, store_url, model_hash, positive_threshold)
    run_chunks(job, plan, ledger, run.engine, run.workers, run.ray_address, run.progress)
    return ledger.totals() | {"chunks": len(plan), "store": store_url}


def recommend_stored(model_dir: Path, users: str | Path, out: Path, store: str | None = None, run: Run = Run(),
                     k: int = 10, chunk_users: int = DEFAULT_CHUNK_USERS, explain: str = "full",
                     threads: int | None = None) -> dict[str, Any]:
    """The recommend job (batch.recommend) for a users file or "all" after checking every input;
    explain: "full" or "none" (EXPLAIN_CHOICES); threads: torch threads per worker (None: torch's
    default). The ledger's totals. ChunkError
    (batch.engines) when chunks failed."""
    if explain not in EXPLAIN_CHOICES:
        raise ValueError(f"explain must be one of {EXPLAIN_CHOICES}, got {explain!r}")
    from recsys_pref.batch.engines import run_chunks
    from recsys_pref.batch.ledger import ChunkLedger
    from recsys_pref.batch.recommend import RecommendJob, file_chunks, read_user_ids, store_chunks
    from recsys_pref.batch.source import fingerprint
    from recsys_pref.service.store import ProfileStore, StoreError

    pipeline, model_hash, store_url = _open_model(model_dir, store, run)
    profile_store = ProfileStore(store_url, pipeline.model.config.state_size)
    stored_hash = profile_store.model_hash()
    if stored_hash is None:
        raise StoreError(f"store {store_url} holds no states yet: run `recsys-pref batch fold-in` first")
    if stored_hash != model_hash:
        raise StoreError(f"store {store_url} holds states of another model (hash {stored_hash[:12]}…, this model "
                         f"{model_hash[:12]}…)")
    if str(users) == "all":
        chunks, users_identity = store_chunks(profile_store, chunk_users), "all"
    else:
        chunks = file_chunks(profile_store, read_user_ids(Path(users)), chunk_users)
        users_identity = fingerprint(Path(users))
    profile_store.close()
    identity = {"job": "recommend", "users": users_identity, "model": model_hash, "store": store_url, "k": k,
                "chunk_users": chunk_users} | ({} if explain == "full" else {"explain": explain})  # full: as before
    plan = [{name: value for name, value in chunk.items() if name != "users"} for chunk in chunks]
    ledger = ChunkLedger.open(out, identity, plan)
    run_chunks(RecommendJob(model_dir, store_url, model_hash, out, k, explain == "full", threads), chunks, ledger,
               run.engine, run.workers, run.ray_address, run.progress)
    return ledger.totals() | {"chunks": len(plan)}


def _failed(name: str, error: Exception) -> int:
    print(f"recsys-pref batch {name}: {error}", file=sys.stderr)
    return 1


def fold_in_main(args: argparse.Namespace) -> int:
    from recsys_pref.batch.engines import ChunkError

    try:
        totals = fold_in_file(args.model, args.interactions, args.store, _run_of(args), args.work_dir, args.chunk_rows,
                              args.positive_threshold)
    except ChunkError as error:
        return _failed("fold-in", error)
    print(f"folded in {totals.get('users', 0)} users from {totals.get('rows', 0)} rows into {totals['store']} "
          f"({totals['chunks']} chunks; {totals.get('unknown_items', 0)} rows of unknown items and "
          f"{totals.get('users_without_positives', 0)} users without a known positive skipped)")
    return 0


def recommend_main(args: argparse.Namespace) -> int:
    from recsys_pref.batch.engines import ChunkError

    try:
        totals = recommend_stored(args.model, args.users, args.out, args.store, _run_of(args), args.k, args.chunk_users,
                                  args.explain, args.threads)
    except ChunkError as error:
        return _failed("recommend", error)
    print(f"wrote {totals.get('rows', 0)} recommendations for {totals.get('users', 0)} users to {args.out} "
          f"({totals['chunks']} part files)")
    return 0
