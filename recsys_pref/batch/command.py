"""`recsys-pref batch fold-in|recommend`: options, checks of every input, then the engine.

Every input is checked before the first chunk runs (the Ray address first, within seconds):
the interaction file's columns and types, the store's model, the users' profiles. A rerun of
the same command resumes: the ledger (in --work-dir for fold-in, in --out for recommend) skips
the chunks already finished.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

DEFAULT_CHUNK_ROWS = 500_000  # fold-in: interaction rows per chunk (memory: about 100 bytes a row)
DEFAULT_CHUNK_USERS = 20_000  # recommend: users per chunk


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
    recommend.set_defaults(handler=recommend_main)
    return batch


def _open_model(args: argparse.Namespace) -> tuple[Any, str, str]:
    """(pipeline, model hash, store URL), after checking the Ray address answers."""
    from recsys_pref.batch.engines import check_reachable

    if args.engine == "ray" and args.ray_address:
        check_reachable(args.ray_address)
    from recsys_pref.pipeline import PersonaPipeline
    from recsys_pref.service.engine import artifact_hash
    from recsys_pref.service.store import default_store_url

    pipeline = PersonaPipeline.load(args.model)
    return pipeline, artifact_hash(args.model), args.store or default_store_url(args.model)


def _ran(job: Any, chunks: list[dict[str, Any]], ledger: Any, args: argparse.Namespace) -> bool:
    """Run the job's pending chunks; False (after one line on stderr) when some failed."""
    from recsys_pref.batch.engines import ChunkError, run_chunks

    try:
        run_chunks(job, chunks, ledger, args.engine, args.workers, args.ray_address, progress=not args.no_progress)
    except ChunkError as error:
        print(f"recsys-pref batch {job.name}: {error}", file=sys.stderr)
        return False
    return True


def fold_in_main(args: argparse.Namespace) -> int:
    from recsys_pref.batch.fold_in import FoldInJob
    from recsys_pref.batch.ledger import ChunkLedger
    from recsys_pref.batch.source import InputError, check_schema, fingerprint, id_dtype, scan, sorted_chunks
    from recsys_pref.service.store import ProfileStore

    pipeline, model_hash, store_url = _open_model(args)
    frame = scan(args.interactions)
    item_dtype = id_dtype(pipeline.item_ids.external)
    check_schema(frame, args.interactions, item_dtype)
    if args.positive_threshold is not None and "rating" not in frame.collect_schema():
        raise InputError(f"{args.interactions}: --positive-threshold needs a rating column")
    work_dir = args.work_dir or args.interactions.with_name(args.interactions.name + ".fold-in")
    path, chunks = sorted_chunks(args.interactions, work_dir, args.chunk_rows)
    store = ProfileStore(store_url, pipeline.model.config.state_size)
    store.check_model(model_hash)  # claims a new store; StoreError for another model's
    store.close()
    plan = [chunk.to_dict() for chunk in chunks]
    identity = {"job": "fold-in", "input": fingerprint(args.interactions), "model": model_hash, "store": store_url,
                "chunk_rows": args.chunk_rows, "positive_threshold": args.positive_threshold}
    ledger = ChunkLedger.open(work_dir, identity, plan)
    job = FoldInJob(args.model, path, store_url, model_hash, args.positive_threshold)
    if not _ran(job, plan, ledger, args):
        return 1
    totals = ledger.totals()
    print(f"folded in {totals.get('users', 0)} users from {totals.get('rows', 0)} rows into {store_url} "
          f"({len(chunks)} chunks; {totals.get('unknown_items', 0)} rows of unknown items and "
          f"{totals.get('users_without_positives', 0)} users without a known positive skipped)")
    return 0


def recommend_main(args: argparse.Namespace) -> int:
    from recsys_pref.batch.ledger import ChunkLedger
    from recsys_pref.batch.recommend import RecommendJob, file_chunks, read_user_ids, store_chunks
    from recsys_pref.batch.source import fingerprint
    from recsys_pref.service.store import ProfileStore, StoreError

    pipeline, model_hash, store_url = _open_model(args)
    store = ProfileStore(store_url, pipeline.model.config.state_size)
    stored_hash = store.model_hash()
    if stored_hash is None:
        raise StoreError(f"store {store_url} holds no states yet: run `recsys-pref batch fold-in` first")
    if stored_hash != model_hash:
        raise StoreError(f"store {store_url} holds states of another model (hash {stored_hash[:12]}…, this model "
                         f"{model_hash[:12]}…)")
    if args.users == "all":
        chunks, users_identity = store_chunks(store, args.chunk_users), "all"
    else:
        users_file = Path(args.users)
        chunks, users_identity = file_chunks(store, read_user_ids(users_file), args.chunk_users), fingerprint(users_file)
    store.close()
    identity = {"job": "recommend", "users": users_identity, "model": model_hash, "store": store_url, "k": args.k,
                "chunk_users": args.chunk_users}
    plan = [{name: value for name, value in chunk.items() if name != "users"} for chunk in chunks]
    ledger = ChunkLedger.open(args.out, identity, plan)
    job = RecommendJob(args.model, store_url, model_hash, args.out, args.k)
    if not _ran(job, chunks, ledger, args):
        return 1
    totals = ledger.totals()
    print(f"wrote {totals.get('rows', 0)} recommendations for {totals.get('users', 0)} users to {args.out} "
          f"({len(chunks)} part files)")
    return 0
