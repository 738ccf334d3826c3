"""`recsys-pref batch fold-in|recommend` on the local engine: results, resumption, bad input."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

import recsys_pref.batch.fold_in as fold_in_module
from recsys_pref.cli import main
from recsys_pref.data import make_synthetic
from recsys_pref.models.persona import PersonaConfig
from recsys_pref.pipeline import PersonaPipeline
from recsys_pref.service.store import ProfileStore

CONFIG = PersonaConfig(n_personas=2, n_bases=4, embedding_dim=8, progress=False)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small persona pipeline saved as `recsys-pref fit` saves it."""
    directory = tmp_path_factory.mktemp("model") / "model"
    PersonaPipeline.fit(make_synthetic(n_users=150, n_items=40, n_personas=2, density=0.2, seed=3), CONFIG).save(directory)
    return directory


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """New users' interactions (ids from 1000), shuffled: the job sorts them itself."""
    rows = make_synthetic(n_users=120, n_items=40, n_personas=2, density=0.2, seed=4).interactions
    path = tmp_path_factory.mktemp("log") / "log.parquet"
    rows.with_columns(pl.col("user_id") + 1000).sample(fraction=1.0, shuffle=True, seed=0).write_parquet(path)
    return path


def _fold_in(model_dir: Path, log: Path, store: str, work: Path, *extra: str) -> int:
    return main(["batch", "fold-in", "--model", str(model_dir), "--interactions", str(log), "--store", store,
                 "--work-dir", str(work), "--chunk-rows", "300", "--no-progress", *extra])


def _states(store_url: str, users: list[str]) -> dict[str, np.ndarray]:
    store = ProfileStore(store_url, CONFIG.state_size)
    return {user: profile.state for user, profile in store.get_profiles(users).items()}


def test_fold_in_stores_every_users_exact_state(model_dir: Path, log: Path, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'profiles.sqlite'}"
    assert _fold_in(model_dir, log, store, tmp_path / "work") == 0
    rows = pl.read_parquet(log).sort("user_id")
    users = rows["user_id"].unique(maintain_order=True).to_list()
    pipeline = PersonaPipeline.load(model_dir)
    histories = rows.group_by("user_id", maintain_order=True).agg("item_id")["item_id"].to_list()
    matrix = np.zeros((len(users), pipeline.model.n_items), np.float32)
    for row, items in enumerate(histories):
        matrix[row, items] = 1.0
    expected = pipeline.model.fold_in(sp.csr_matrix(matrix)).vectors()
    stored = _states(store, [str(user) for user in users])
    assert len(stored) == len(users)
    np.testing.assert_allclose(np.stack([stored[str(user)] for user in users]), expected, atol=1e-5)


def test_a_failed_chunk_is_named_and_a_rerun_redoes_only_it(
        model_dir: Path, log: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    store = f"sqlite:///{tmp_path / 'profiles.sqlite'}"
    real, ran = fold_in_module.fold_in_chunk, []

    def failing_second(chunk: dict[str, Any], *args: Any) -> dict[str, Any]:
        ran.append(chunk["index"])
        if chunk["index"] == 1:
            raise RuntimeError("worker lost")
        return real(chunk, *args)

    monkeypatch.setattr(fold_in_module, "fold_in_chunk", failing_second)
    assert _fold_in(model_dir, log, store, tmp_path / "work") == 1
    assert "chunk 1 (users " in capsys.readouterr().err
    n_chunks = len(ran)
    assert n_chunks >= 3
    ran.clear()
    monkeypatch.setattr(fold_in_module, "fold_in_chunk", lambda chunk, *args: ran.append(chunk["index"]) or real(chunk, *args))
    assert _fold_in(model_dir, log, store, tmp_path / "work") == 0
    assert ran == [1]
    users = pl.read_parquet(log)["user_id"].unique().cast(pl.String).to_list()
    assert len(_states(store, users)) == len(users)


@pytest.fixture(scope="module")
def folded(model_dir: Path, log: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store with every user of `log` folded in."""
    directory = tmp_path_factory.mktemp("folded")
    store = f"sqlite:///{directory / 'profiles.sqlite'}"
    assert _fold_in(model_dir, log, store, directory / "work") == 0
    return store


def _recommend(model_dir: Path, store: str, users: str, out: Path, *extra: str) -> int:
    return main(["batch", "recommend", "--model", str(model_dir), "--store", store, "--users", users, "--k", "5",
                 "--out", str(out), "--chunk-users", "50", "--no-progress", *extra])


def test_recommend_writes_what_the_pipeline_serves_from_the_same_history(
        model_dir: Path, log: Path, folded: str, tmp_path: Path) -> None:
    assert _recommend(model_dir, folded, "all", tmp_path / "out") == 0
    written = pl.read_parquet(tmp_path / "out" / "part-*.parquet")
    assert sorted(path.name for path in (tmp_path / "out").glob("part-*.parquet")) == [
        "part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    rows = pl.read_parquet(log)
    users = sorted(rows["user_id"].unique().to_list(), key=str)  # `all` pages the store in text order
    expected = PersonaPipeline.load(model_dir).recommend(users, k=5, history=rows)
    assert written.columns == expected.columns
    assert written["user_id"].to_list() == expected["user_id"].to_list()
    assert written["item_id"].to_list() == expected["item_id"].to_list()
    np.testing.assert_allclose(written["score"].to_numpy(), expected["score"].to_numpy(), atol=1e-4)


def test_an_interrupted_part_write_leaves_no_file_and_a_rerun_completes(
        model_dir: Path, folded: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = pl.DataFrame.write_parquet

    def half_then_crash(frame: pl.DataFrame, path: Any, *args: Any, **kwargs: Any) -> None:
        Path(path).write_bytes(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", half_then_crash)
    assert _recommend(model_dir, folded, "all", tmp_path / "out") == 1
    assert [path.name for path in (tmp_path / "out").iterdir()] == ["_ledger.json"]
    monkeypatch.setattr(pl.DataFrame, "write_parquet", real)
    assert _recommend(model_dir, folded, "all", tmp_path / "out") == 0
    assert len(list((tmp_path / "out").glob("part-*.parquet"))) == 3


def test_a_users_file_with_ids_not_in_the_store_is_refused_before_any_chunk(
        model_dir: Path, folded: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "users.txt").write_text("1000\n1001\n999999\n")
    assert _recommend(model_dir, folded, str(tmp_path / "users.txt"), tmp_path / "out") == 2
    error = capsys.readouterr().err
    assert "1 user(s) have no profile in store" in error and "'999999'" in error
    assert not (tmp_path / "out").exists()


def test_a_store_of_another_model_is_refused(
        model_dir: Path, log: Path, folded: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other"
    PersonaPipeline.fit(make_synthetic(n_users=150, n_items=40, n_personas=2, density=0.2, seed=5), CONFIG).save(other)
    assert _fold_in(other, log, folded, tmp_path / "work") == 2
    assert "another model" in capsys.readouterr().err
    assert _recommend(other, folded, "all", tmp_path / "out") == 2
    assert "another model" in capsys.readouterr().err


def test_an_interaction_file_with_an_unknown_column_is_refused(
        model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pl.DataFrame({"user_id": [1], "item_id": [2], "clicks": [3]}).write_parquet(tmp_path / "bad.parquet")
    store = tmp_path / "profiles.sqlite"
    assert _fold_in(model_dir, tmp_path / "bad.parquet", f"sqlite:///{store}", tmp_path / "work") == 2
    assert "unknown column(s) ['clicks']" in capsys.readouterr().err
    assert not store.exists()


def test_an_unreachable_ray_address_fails_within_seconds(
        model_dir: Path, log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.perf_counter()
    code = _fold_in(model_dir, log, f"sqlite:///{tmp_path / 'p.sqlite'}", tmp_path / "work", "--engine", "ray",
                    "--ray-address", "127.0.0.1:1")
    assert code == 2 and time.perf_counter() - started < 10
    assert "cannot reach Ray at 127.0.0.1:1" in capsys.readouterr().err


def test_recommend_without_explanations_writes_the_same_ranking_with_null_explanation_columns(
        model_dir: Path, folded: str, tmp_path: Path) -> None:
    assert _recommend(model_dir, folded, "all", tmp_path / "full") == 0
    assert _recommend(model_dir, folded, "all", tmp_path / "none", "--explain", "none") == 0
    full, bare = (pl.read_parquet(tmp_path / name / "part-*.parquet") for name in ("full", "none"))
    assert bare.schema == full.schema
    ranking = ["user_id", "rank", "item_id", "score", "exploration"]
    assert bare.select(ranking).equals(full.select(ranking))
    explanations = [name for name in bare.columns if name not in ranking]
    assert bare.select(explanations).null_count().row(0) == (bare.height,) * len(explanations)


def test_recommend_on_one_torch_thread_writes_the_same_rows(model_dir: Path, folded: str, tmp_path: Path) -> None:
    import torch

    threads = torch.get_num_threads()
    try:
        assert _recommend(model_dir, folded, "all", tmp_path / "one", "--threads", "1") == 0
    finally:
        torch.set_num_threads(threads)
    assert _recommend(model_dir, folded, "all", tmp_path / "default") == 0
    one, default = (pl.read_parquet(tmp_path / name / "part-*.parquet") for name in ("one", "default"))
    assert one.drop("score").equals(default.drop("score"))
    np.testing.assert_allclose(one["score"].to_numpy(), default["score"].to_numpy(), rtol=1e-5)
