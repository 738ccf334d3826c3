"""The batch jobs on a local Ray instance of 2 workers: the same files as the local engine,
and a chunk failing on a worker is named and redone by a rerun. One Ray start for the module
(it takes ~15 s on 2 cores)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import polars as pl
import pytest

from recsys_pref.batch.engines import ChunkError, run_chunks
from recsys_pref.batch.fold_in import FoldInJob
from recsys_pref.batch.ledger import ChunkLedger
from recsys_pref.batch.recommend import RecommendJob, store_chunks
from recsys_pref.batch.source import sorted_chunks
from recsys_pref.data import make_synthetic
from recsys_pref.models.persona import PersonaConfig
from recsys_pref.pipeline import PersonaPipeline
from recsys_pref.service.engine import artifact_hash
from recsys_pref.service.store import ProfileStore

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.integration
CONFIG = PersonaConfig(n_personas=2, n_bases=4, embedding_dim=8, progress=False)


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("model") / "model"
    PersonaPipeline.fit(make_synthetic(n_users=150, n_items=40, n_personas=2, density=0.2, seed=3), CONFIG).save(directory)
    return directory


def _fold_in(model_dir: Path, log: Path, directory: Path, engine: str) -> str:
    """Fold `log` into a new store in `directory` on `engine`; its URL."""
    directory.mkdir()
    url, model_hash = f"sqlite:///{directory / 'profiles.sqlite'}", artifact_hash(model_dir)
    ProfileStore(url, CONFIG.state_size).check_model(model_hash)
    path, chunks = sorted_chunks(log, directory / "work", chunk_rows=300)
    plan = [chunk.to_dict() for chunk in chunks]
    run_chunks(FoldInJob(model_dir, path, url, model_hash), plan, ChunkLedger.open(directory / "work", {}, plan),
               engine, workers=2, progress=False)
    return url


def _recommend(model_dir: Path, url: str, out: Path, engine: str) -> None:
    chunks = store_chunks(ProfileStore(url, CONFIG.state_size), chunk_users=40)
    run_chunks(RecommendJob(model_dir, url, artifact_hash(model_dir), out, k=5), chunks,
               ChunkLedger.open(out, {}, chunks), engine, workers=2, progress=False)


def test_ray_with_two_workers_writes_the_same_files_as_the_local_engine_and_resumes_a_failed_chunk(
        local_ray: None, model_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "log.parquet"
    make_synthetic(n_users=120, n_items=40, n_personas=2, density=0.2, seed=4).interactions.write_parquet(log)
    stores = {engine: _fold_in(model_dir, log, tmp_path / engine, engine) for engine in ("local", "ray")}
    users = pl.read_parquet(log)["user_id"].unique().cast(pl.String).to_list()
    states = {engine: {user: profile.state.tobytes() for user, profile in
                       ProfileStore(url, CONFIG.state_size).get_profiles(users).items()} for engine, url in stores.items()}
    assert len(states["local"]) == len(users) and states["ray"] == states["local"]
    _recommend(model_dir, stores["local"], tmp_path / "out-local", "local")

    # on Ray, a chunk fails on a worker (its first user vanished from the store after the plan)
    url, out = stores["ray"], tmp_path / "out-ray"
    store = ProfileStore(url, CONFIG.state_size)
    chunks = store_chunks(store, chunk_users=40)
    ledger = ChunkLedger.open(out, {}, chunks)
    job = RecommendJob(model_dir, url, artifact_hash(model_dir), out, k=5)
    vanished = store.get_profile(chunks[1]["first"])
    store.forget(vanished.user_id, tombstone=False)
    with pytest.raises(ChunkError, match=r"1 of 3 chunks failed.*chunk 1 \(users "):
        run_chunks(job, chunks, ledger, "ray", workers=2, progress=False)
    assert ledger.pending() == [1] and not (out / "part-00001.parquet").exists()
    store.put_states([(vanished.user_id, vanished.state, vanished.items)])
    run_chunks(job, chunks, ledger, "ray", workers=2, progress=False)  # the rerun: chunk 1 alone

    parts = sorted(path.name for path in (tmp_path / "out-local").glob("part-*.parquet"))
    assert len(parts) == 3 and sorted(path.name for path in out.glob("part-*.parquet")) == parts
    for name in parts:
        assert (out / name).read_bytes() == (tmp_path / "out-local" / name).read_bytes()
