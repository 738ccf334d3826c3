"""An interaction file read in user-contiguous chunks, in memory bounded by the chunk.

The file (Parquet, or CSV/TSV) holds one row per interaction: user_id and item_id (whole
numbers or text), optionally rating (a number) and timestamp (a whole number or a date-time).
Any other column, or a column of another type, is refused before any work starts.

Chunks are consecutive row ranges that never split a user, so the file must be sorted by
user_id. A Parquet file that is sorted is read in place; anything else (CSV, or an unsorted
file) is first sorted once into the job's work directory by polars' streaming engine
(`sort` + `sink_parquet`), and the sorted copy is reused by a rerun.

The plan is one streaming pass over the user_id column (`collect_batches`, memory bounded by
PLAN_BATCH_ROWS whatever the file's size): a chunk closes at the first change of user after
`chunk_rows` rows. A chunk is read back by `scan_parquet(...).slice(offset, rows)`, which
Parquet answers from the row groups that hold it.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import polars as pl

PLAN_BATCH_ROWS = 1 << 20  # user ids held at once while planning
SORTED_FILE = "interactions.sorted.parquet"  # the sorted copy inside the work directory
REQUIRED = ("user_id", "item_id")
OPTIONAL = ("rating", "timestamp")


class InputError(ValueError):
    """An input file the batch jobs cannot use (unknown columns, wrong types, unreadable)."""


@dataclass(frozen=True)
class RowChunk:
    """Rows [offset, offset + rows) of the sorted file: every row of the users first..last
    (as text), and no other user's."""

    index: int
    offset: int
    rows: int
    first: str
    last: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def scan(path: Path) -> pl.LazyFrame:
    """A lazy frame over `path` by its suffix (.parquet, .csv or .tsv); InputError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no interaction file at {path}")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pl.scan_parquet(path)
    if suffix in (".csv", ".tsv"):
        return pl.scan_csv(path, separator="\t" if suffix == ".tsv" else ",")
    raise InputError(f"{path}: interaction files are .parquet, .csv or .tsv, got {suffix or 'no suffix'!r}")


def check_schema(frame: pl.LazyFrame, path: Path, item_dtype: pl.DataType) -> None:
    """InputError naming every problem: missing or unknown columns, ids that are neither whole
    numbers nor text, item ids of another kind than the model's (`item_dtype`), a rating that is
    not a number, a timestamp that is neither a whole number nor a date-time."""
    try:
        schema = frame.collect_schema()
    except (pl.exceptions.PolarsError, OSError) as error:
        raise InputError(f"{path}: cannot read the file: {error}") from error
    problems = [f"missing column {name!r}" for name in REQUIRED if name not in schema]
    unknown = [name for name in schema if name not in REQUIRED + OPTIONAL]
    if unknown:
        problems.append(f"unknown column(s) {unknown} (allowed: {', '.join(REQUIRED + OPTIONAL)})")
    for name in REQUIRED:
        dtype = schema.get(name)
        if dtype is not None and not (dtype.is_integer() or dtype == pl.String):
            problems.append(f"{name} is {dtype}; ids are whole numbers or text")
    item = schema.get("item_id")
    if item is not None and (item.is_integer() or item == pl.String) and item.is_integer() != item_dtype.is_integer():
        problems.append(f"item_id is {item}, the model's item ids are {item_dtype}")
    if "rating" in schema and not schema["rating"].is_numeric():
        problems.append(f"rating is {schema['rating']}; expected a number")
    if "timestamp" in schema and not (schema["timestamp"].is_integer() or schema["timestamp"].is_temporal()):
        problems.append(f"timestamp is {schema['timestamp']}; expected whole seconds or a date-time")
    if problems:
        raise InputError(f"{path}: " + "; ".join(problems))


def id_dtype(external_ids: np.ndarray) -> pl.DataType:
    """The polars type of a model's external ids (an IdMap's `external`)."""
    return pl.Series(external_ids[:1].tolist()).dtype


def fingerprint(path: Path) -> dict[str, Any]:
    """What identifies an input file for a rerun: its resolved path, size and modification time."""
    stat = Path(path).stat()
    return {"path": str(Path(path).resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


class UnsortedInput(Exception):
    """The file's user_id decreases somewhere: it must be sorted before it can be chunked."""


def _user_batches(path: Path) -> Iterator[np.ndarray]:
    """The user_id column of a Parquet file, PLAN_BATCH_ROWS values at a time."""
    for batch in pl.scan_parquet(path).select("user_id").collect_batches(chunk_size=PLAN_BATCH_ROWS):
        users = batch["user_id"]
        if users.null_count():
            raise InputError(f"{path}: user_id has null values")
        yield users.to_numpy()


def plan_row_chunks(path: Path, chunk_rows: int) -> list[RowChunk]:
    """Cut a Parquet file sorted by user_id into chunks of at least `chunk_rows` rows (the last
    may be shorter) that end where the user changes; one streaming pass. UnsortedInput when
    user_id decreases anywhere."""
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    chunks: list[RowChunk] = []
    start, offset = 0, 0
    first: Any = None
    previous: Any = None
    for users in _user_batches(path):
        if (previous is not None and users[0] < previous) or (users[1:] < users[:-1]).any():
            raise UnsortedInput(str(path))
        starts = np.flatnonzero(users[1:] != users[:-1]) + 1  # positions where a new user begins
        if previous is not None and users[0] != previous:
            starts = np.concatenate(([0], starts))
        first = users[0] if first is None else first
        for position in starts.tolist():
            row = offset + position
            if row - start >= chunk_rows:
                last = users[position - 1] if position else previous
                chunks.append(RowChunk(len(chunks), start, row - start, str(first), str(last)))
                start, first = row, users[position]
        previous, offset = users[-1], offset + len(users)
    if offset > start:
        chunks.append(RowChunk(len(chunks), start, offset - start, str(first), str(previous)))
    return chunks


def sorted_chunks(path: Path, work_dir: Path, chunk_rows: int) -> tuple[Path, list[RowChunk]]:
    """The file to read and its chunks: `path` itself when it is Parquet sorted by user_id; else
    its copy sorted by user_id in `work_dir` (written once through a temporary file and a
    rename, and reused by a rerun)."""
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        try:
            return path, plan_row_chunks(path, chunk_rows)
        except UnsortedInput:
            pass
    target = Path(work_dir) / SORTED_FILE
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            scan(path).sort("user_id", maintain_order=True).sink_parquet(temporary)
            os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
    return target, plan_row_chunks(target, chunk_rows)


def read_chunk(path: Path, chunk: RowChunk) -> pl.DataFrame:
    """The chunk's rows (every column of the file)."""
    frame = pl.scan_parquet(path).slice(chunk.offset, chunk.rows).collect()
    if frame.height != chunk.rows:
        raise InputError(f"{path} changed: chunk {chunk.index} expected {chunk.rows} rows at {chunk.offset}, "
                         f"read {frame.height}")
    return frame
