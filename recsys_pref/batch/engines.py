"""Run a job's per-chunk function over its pending chunks: here (`local`) or on Ray (`ray`).

A job is a small picklable description (paths, URLs, settings) whose `open()` loads what the
chunks need (the model, the store) once per process and returns the per-chunk function,
chunk dict -> report dict. Both engines run exactly that function on exactly the same chunks,
so their outputs are the same files.

- local: one process, the chunks in order.
- ray: Ray Data `map_batches` over a dataset with one row per pending chunk (batch_size=1),
  with `workers` actors, each opening the job once. Without `ray_address` the job starts a
  local Ray instance of `workers` CPUs and stops it at the end; with one it joins that cluster
  (`host:port` of the head's GCS, `ray://host:10001` for Ray Client, or `auto`). An address
  that refuses or does not answer within CONNECT_TIMEOUT_S is a clear error before any work;
  one where something else listens is refused by Ray itself (its own retries take ~20 s).

A chunk that raises does not stop the others: every finished chunk is recorded in the ledger
as it arrives, and at the end ChunkError names each failed chunk and its error, so rerunning
the same command redoes only those.
"""
from __future__ import annotations

import json
import socket
from typing import Any, Callable, Literal, Protocol

from tqdm.auto import tqdm

from recsys_pref.batch.ledger import ChunkLedger

Engine = Literal["local", "ray"]
ENGINES = ("local", "ray")
CONNECT_TIMEOUT_S = 5.0
ChunkFunction = Callable[[dict[str, Any]], dict[str, Any]]


class ChunkJob(Protocol):
    """What an engine runs: `open()` returns the per-chunk function (loaded once per process)."""

    name: str

    def open(self) -> ChunkFunction: ...


class ChunkError(RuntimeError):
    """Some chunks failed; the others are finished and recorded, and a rerun resumes."""


class RayUnreachable(ConnectionError):
    """The Ray address given does not answer."""


def run_chunks(job: ChunkJob, chunks: list[dict[str, Any]], ledger: ChunkLedger, engine: Engine = "local",
               workers: int = 2, ray_address: str | None = None, progress: bool = True) -> None:
    """Run `job` on every chunk the ledger has not finished; ChunkError naming the failed ones."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    unfinished = set(ledger.pending())
    pending = [chunk for chunk in chunks if chunk["index"] in unfinished]
    if not pending:
        return
    bar = tqdm(total=len(chunks), initial=len(chunks) - len(pending), desc=f"{job.name} chunks", unit="chunk",
               disable=not progress)
    results = _run_local(job, pending) if engine == "local" else _run_ray(job, pending, workers, ray_address)
    failures = []
    try:
        for index, report, error in results:
            if error:
                failures.append(f"chunk {index} ({_describe(chunks[index])}): {error}")
            else:
                ledger.finish(index, report)
            bar.update()
    finally:
        bar.close()
    if failures:
        raise ChunkError(f"{job.name}: {len(failures)} of {len(chunks)} chunks failed; the other chunks are done and "
                         "recorded, so rerunning the same command redoes only these: " + "; ".join(failures))


def _describe(chunk: dict[str, Any]) -> str:
    return f"users {chunk['first']}..{chunk['last']}" if "first" in chunk else f"{len(chunk.get('users', []))} users"


def _attempt(function: ChunkFunction, chunk: dict[str, Any]) -> tuple[int, dict[str, Any], str]:
    """(index, report, "") or (index, {}, the error as one line)."""
    try:
        return chunk["index"], function(chunk), ""
    except Exception as error:  # noqa: BLE001 - reported per chunk; the job goes on with the others
        return chunk["index"], {}, f"{type(error).__name__}: {error}"


def _run_local(job: ChunkJob, pending: list[dict[str, Any]]):
    function = job.open()
    for chunk in pending:
        yield _attempt(function, chunk)


class _RayChunkRunner:
    """A Ray Data actor: opens the job once, then runs one chunk per batch."""

    def __init__(self, job: ChunkJob) -> None:
        self.function = job.open()

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        index, report, error = _attempt(self.function, json.loads(batch["chunk"][0]))
        return {"index": [index], "report": [json.dumps(report)], "error": [error]}


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """RayUnreachable unless a TCP connection to the address's host:port opens within
    `timeout_s` ("auto" is left to Ray, which fails at once when no local cluster runs)."""
    if address == "auto":
        return
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise RayUnreachable(f"Ray address {address!r} is not host:port, ray://host:port or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as error:
        raise RayUnreachable(f"cannot reach Ray at {address} within {timeout_s:.0f} s ({error}); is the head node "
                             "running (`ray start --head`) and the port open?") from None


def _run_ray(job: ChunkJob, pending: list[dict[str, Any]], workers: int, ray_address: str | None):
    import ray

    if ray_address is not None:
        check_reachable(ray_address)
    started_here = not ray.is_initialized()
    if started_here:
        options: dict[str, Any] = {"address": ray_address} if ray_address else {"num_cpus": workers}
        try:
            ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR", **options)
        except ConnectionError as error:  # something answered the port, but not a Ray head
            raise RayUnreachable(f"cannot join Ray at {ray_address}: {error}") from None
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        rows = ray.data.from_items([{"chunk": json.dumps(chunk)} for chunk in pending],
                                   override_num_blocks=len(pending))
        results = rows.map_batches(_RayChunkRunner, fn_constructor_args=(job,), batch_size=1, concurrency=workers,
                                   num_cpus=1)
        for row in results.iter_rows():
            yield int(row["index"]), json.loads(row["report"]), str(row["error"])
    finally:
        if started_here:
            ray.shutdown()
