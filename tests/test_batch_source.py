"""Batch jobs' input: an interaction file checked, then cut into user-contiguous chunks."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsys_pref.batch.ledger import ChunkLedger, LedgerMismatch
from recsys_pref.batch.source import InputError, check_schema, plan_row_chunks, read_chunk, scan, sorted_chunks


def _log(users: int, seed: int = 0) -> pl.DataFrame:
    """`users` users with 1..6 rows each, sorted by user."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 7, size=users)
    return pl.DataFrame({"user_id": np.repeat(np.arange(users), counts), "item_id": rng.integers(0, 30, counts.sum())})


def test_chunks_cover_every_row_once_and_never_split_a_user(tmp_path: Path) -> None:
    log = _log(200)
    log.write_parquet(tmp_path / "log.parquet", row_group_size=64)
    chunks = plan_row_chunks(tmp_path / "log.parquet", chunk_rows=50)
    parts = [read_chunk(tmp_path / "log.parquet", chunk) for chunk in chunks]
    assert pl.concat(parts).equals(log)
    owners = [set(part["user_id"].to_list()) for part in parts]
    assert all(not a & b for i, a in enumerate(owners) for b in owners[i + 1 :])
    assert all(part.height >= 50 for part in parts[:-1])
    assert [(chunk.first, chunk.last) for chunk in chunks] == [(str(p["user_id"][0]), str(p["user_id"][-1])) for p in parts]


def test_an_unsorted_csv_is_chunked_from_a_sorted_copy_in_the_work_dir(tmp_path: Path) -> None:
    log = _log(100)
    log.sample(fraction=1.0, shuffle=True, seed=1).write_csv(tmp_path / "log.csv")
    path, chunks = sorted_chunks(tmp_path / "log.csv", tmp_path / "work", chunk_rows=40)
    assert path.parent == tmp_path / "work"
    rows = pl.concat([read_chunk(path, chunk) for chunk in chunks])
    assert rows["user_id"].is_sorted()
    assert rows.sort("user_id", "item_id").equals(log.sort("user_id", "item_id"))


@pytest.mark.parametrize("frame, problem", [
    (pl.DataFrame({"user_id": [1], "item_id": [2], "clicks": [3]}), "unknown column(s) ['clicks']"),
    (pl.DataFrame({"user_id": [1.5], "item_id": [2]}), "user_id is Float64"),
    (pl.DataFrame({"user_id": [1], "item_id": ["a"]}), "the model's item ids are Int64"),
    (pl.DataFrame({"user_id": [1], "item_id": [2], "rating": ["good"]}), "rating is String"),
    (pl.DataFrame({"user_id": [1]}), "missing column 'item_id'"),
])
def test_an_interaction_file_with_unknown_columns_or_wrong_types_is_refused(
        tmp_path: Path, frame: pl.DataFrame, problem: str) -> None:
    frame.write_parquet(tmp_path / "bad.parquet")
    with pytest.raises(InputError, match=problem.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        check_schema(scan(tmp_path / "bad.parquet"), tmp_path / "bad.parquet", pl.Int64)


def test_a_ledger_of_another_job_is_refused(tmp_path: Path) -> None:
    ChunkLedger.open(tmp_path, {"job": "a"}, [{"index": 0}]).finish(0, {"users": 3})
    assert ChunkLedger.open(tmp_path, {"job": "a"}, [{"index": 0}]).pending() == []
    with pytest.raises(LedgerMismatch, match="belongs to another job"):
        ChunkLedger.open(tmp_path, {"job": "b"}, [{"index": 0}])
