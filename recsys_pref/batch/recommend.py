"""The recommend job: top-k for stored users, written as partitioned Parquet.

    recsys-pref batch recommend --model DIR --users FILE|all --k 10 --out DIR [--store URL]

The users are those of a file (a user_id column, or one id per line) or every user in the
profile store (`all`, paged in id order). Every user must have a stored profile: ids missing
from the store are refused before any chunk runs. Per chunk of `chunk_users` users the stored
states, items and mute/boost settings go through the one serving pipeline, exactly as the
service serves a stored user (service.engine.PersonaEngine.recommend: certified retrieval for
large catalogs, every stored item and training interaction filtered as seen, explanations),
and the chunk's rows, in the users' order, are written to DIR/part-NNNNN.parquet through a
temporary file and a rename: a part file is complete or absent. Columns: the pipeline's
RECOMMENDATION_COLUMNS; with `--explain none` the same rows with the explanation columns null
(the pipeline's recommend(explain=False): no persona descriptions, no explanations).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from recsys_pref.batch.engines import ChunkFunction
from recsys_pref.batch.source import id_dtype
from recsys_pref.service.store import IN_CLAUSE_IDS, ProfileStore, StoreError, profiles

PART_NAME = "part-{index:05d}.parquet"


class UnknownUsers(ValueError):
    """Users asked for who have no profile in the store."""


def read_user_ids(path: Path) -> list[str]:
    """User ids as text from a Parquet/CSV/TSV file with a user_id column, or a text file with
    one id per line (blank lines skipped); ValueError naming the file when it has no user_id
    column, an empty user_id or no user at all. The users file of `batch recommend` and of
    `recsys-pref recommend`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no users file at {path}")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame = pl.read_parquet(path)
    elif suffix in (".csv", ".tsv"):
        frame = pl.read_csv(path, separator="\t" if suffix == ".tsv" else ",")
    else:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        frame = pl.DataFrame({"user_id": lines}, schema={"user_id": pl.String})
    if "user_id" not in frame.columns:
        raise ValueError(f"{path} needs a user_id column; it has {frame.columns}")
    if frame["user_id"].null_count():
        raise ValueError(f"{path}: user_id has empty values")
    if frame.is_empty():
        raise ValueError(f"{path} lists no user")
    return frame["user_id"].cast(pl.String).to_list()


def missing_from_store(store: ProfileStore, users: list[str]) -> list[str]:
    """The users (in order) without a stored profile, IN_CLAUSE_IDS ids per query."""
    from sqlalchemy import select

    present: set[str] = set()
    with store.engine.connect() as connection:
        for start in range(0, len(users), IN_CLAUSE_IDS):
            page = users[start : start + IN_CLAUSE_IDS]
            present.update(connection.execute(select(profiles.c.user_id).where(profiles.c.user_id.in_(page))).scalars())
    return [user for user in users if user not in present]


def file_chunks(store: ProfileStore, users: list[str], chunk_users: int) -> list[dict[str, Any]]:
    """Chunks of a users file's ids (carried in each chunk); UnknownUsers if any has no profile."""
    duplicated = pl.Series(users).is_duplicated()
    if duplicated.any():
        raise ValueError(f"the users file repeats user(s) {sorted(set(pl.Series(users).filter(duplicated)))[:5]}")
    missing = missing_from_store(store, users)
    if missing:
        raise UnknownUsers(f"{len(missing)} user(s) have no profile in store {store.url}, e.g. {missing[:5]}; fold them "
                           "in first (recsys-pref batch fold-in) or remove them from the users file")
    return [{"index": index, "first": part[0], "last": part[-1], "count": len(part), "users": part}
            for index, part in enumerate(users[start : start + chunk_users] for start in range(0, len(users), chunk_users))]


def store_chunks(store: ProfileStore, chunk_users: int) -> list[dict[str, Any]]:
    """Chunks of every stored user in id order, as boundaries (after, first, last, count):
    each chunk pages its ids from the store itself."""
    chunks, after = [], None
    while ids := store.profile_ids(after, limit=chunk_users):
        chunks.append({"index": len(chunks), "after": after, "first": ids[0], "last": ids[-1], "count": len(ids)})
        after = ids[-1]
    if not chunks:
        raise ValueError(f"store {store.url} holds no profile")
    return chunks


def chunk_users_of(store: ProfileStore, chunk: dict[str, Any]) -> list[str]:
    """A chunk's user ids: carried (users file) or paged from the store (all), checked unchanged."""
    if "users" in chunk:
        return list(chunk["users"])
    ids = store.profile_ids(chunk["after"], limit=chunk["count"])
    if not ids or ids[0] != chunk["first"] or ids[-1] != chunk["last"]:
        raise StoreError(f"the store's users changed since the job was planned (chunk {chunk['index']}); "
                         "write to a new --out directory")
    return ids


@dataclass(frozen=True)
class RecommendJob:
    """Top-k for stored users into out_dir's part files: picklable, for Ray."""

    model_dir: Path
    store_url: str
    model_hash: str
    out_dir: Path
    k: int = 10
    explain: bool = True
    threads: int | None = None
    name: str = "recommend"

    def open(self) -> ChunkFunction:
        """Load the serving pipeline (labels and retrieval index built now) and open the store;
        `threads`: torch's intra-op threads in this process (None: torch's default)."""
        import torch

        from recsys_pref.pipeline import PersonaPipeline
        from recsys_pref.service.engine import PersonaEngine

        if self.threads is not None:
            torch.set_num_threads(self.threads)

        engine = PersonaEngine(PersonaPipeline.load(self.model_dir), self.model_hash)
        store = ProfileStore(self.store_url, engine.state_size)
        if store.model_hash() != self.model_hash:
            raise StoreError(f"store {self.store_url} holds states of another model")
        serving = Serving(engine, store, id_dtype(engine.pipeline.user_ids.external).is_integer(),
                          id_dtype(engine.pipeline.item_ids.external).is_integer())
        return lambda chunk: recommend_chunk(chunk, serving, self.k, self.out_dir, self.explain)


@dataclass(frozen=True)
class Serving:
    """What a chunk is served with: the engine (service.engine.PersonaEngine), the store, and
    whether the model's user and item ids are whole numbers (the store keeps them as text)."""

    engine: Any
    store: ProfileStore
    integer_users: bool
    integer_items: bool

    def user(self, text: str) -> Any:
        return int(text) if self.integer_users else text

    def item(self, text: str) -> Any:
        return int(text) if self.integer_items else text


def _control_groups(controls: list[dict[str, Any]]) -> list[list[int]]:
    """Positions of the users sharing each distinct stored control (mute/boost), first seen first."""
    groups: dict[str, list[int]] = {}
    for position, control in enumerate(controls):
        groups.setdefault(repr(control), []).append(position)
    return list(groups.values())


def recommend_chunk(chunk: dict[str, Any], serving: Serving, k: int, out_dir: Path, explain: bool = True
                    ) -> dict[str, Any]:
    """Recommend for one chunk's users (explained, or with the explanation columns null) and
    write its part file atomically; the chunk's report."""
    import numpy as np

    from recsys_pref.service.profiles import control_from_json

    started = time.perf_counter()
    users = chunk_users_of(serving.store, chunk)
    stored = serving.store.get_profiles(users)
    missing = [user for user in users if user not in stored]
    if missing:
        raise UnknownUsers(f"user(s) {missing[:5]} have no profile in the store (deleted since the job started?)")
    chunk_profiles = [stored[user] for user in users]
    ids = [serving.user(user) for user in users]
    frames = []
    for group in _control_groups([profile.control for profile in chunk_profiles]):
        frame = serving.engine.recommend(
            [ids[position] for position in group], np.stack([chunk_profiles[position].state for position in group]),
            [[serving.item(item) for item in chunk_profiles[position].items] for position in group], k,
            control_from_json(chunk_profiles[group[0]].control), None, explain=explain)
        position_of = pl.col("user_id").replace_strict([ids[position] for position in group], group,
                                                       return_dtype=pl.Int64)
        frames.append(frame.with_columns(position_of.alias("_position")))
    result = pl.concat(frames).sort("_position", "rank").drop("_position")  # the users' order, then rank
    write_part(result, Path(out_dir) / PART_NAME.format(index=chunk["index"]))
    return {"users": len(users), "rows": result.height, "seconds": round(time.perf_counter() - started, 3)}


def write_part(frame: pl.DataFrame, path: Path) -> None:
    """`frame` as Parquet at `path` through a temporary file and a rename (complete or absent)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        frame.write_parquet(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
