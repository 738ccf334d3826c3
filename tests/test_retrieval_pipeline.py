"""The serving path through the candidate index: PersonaPipeline.recommend, its artifact, the bench."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsys_pref.cli import main
from recsys_pref.data import make_synthetic, paths
from recsys_pref.models.artifact import MANIFEST_FILE, ArtifactError, _sha256
from recsys_pref.pipeline import INDEX_FILE, PersonaPipeline
from recsys_pref.retrieval.index import IndexConfig, IndexMismatchError
from recsys_pref.retrieval.serving import RetrievalConfig

THROUGH_INDEX = RetrievalConfig(min_items=1, norm_order=False)  # every catalog goes through the index


@pytest.fixture(scope="module")
def dataset():
    return make_synthetic(n_users=80, n_items=60, n_personas=2, density=0.2, seed=3)


@pytest.fixture(scope="module")
def pipeline(dataset, tiny_persona):
    return PersonaPipeline.fit(dataset, tiny_persona)


def through_index(pipeline: PersonaPipeline, config: RetrievalConfig = THROUGH_INDEX) -> PersonaPipeline:
    return replace(pipeline, retrieval=config, loaded_index=None)


def test_small_catalogs_are_scored_exhaustively_by_default(pipeline):
    assert not pipeline.retriever.uses_index


def test_recommend_through_the_index_equals_exhaustive_scoring(pipeline, dataset):
    users = dataset.user_ids.to_list()[:10]
    indexed = through_index(pipeline)
    frame = indexed.recommend(users, k=7)
    assert indexed.retriever.uses_index and indexed.retriever.built_index is not None
    expected = pipeline.recommend(users, k=7)
    assert frame.select("user_id", "rank", "item_id").equals(expected.select("user_id", "rank", "item_id"))
    np.testing.assert_allclose(frame["score"].to_numpy(), expected["score"].to_numpy(), rtol=1e-5)


def test_folded_in_users_go_through_the_index_too(pipeline, dataset):
    history = pl.DataFrame({"user_id": [10_000] * 3, "item_id": dataset.item_ids.to_list()[:3]})
    frame = through_index(pipeline).recommend([10_000], k=5, history=history)
    expected = pipeline.recommend([10_000], k=5, history=history)
    assert frame["item_id"].to_list() == expected["item_id"].to_list()
    assert not set(frame["item_id"].to_list()) & set(dataset.item_ids.to_list()[:3])


def test_the_artifact_carries_the_index_and_its_config(pipeline, dataset, tmp_path):
    indexed = through_index(pipeline, RetrievalConfig(min_items=1, index=IndexConfig(factory="ExactIVF8")))
    indexed.save(tmp_path / "model")
    assert (tmp_path / "model" / INDEX_FILE).is_file()
    loaded = PersonaPipeline.load(tmp_path / "model")
    assert loaded.retrieval == indexed.retrieval
    assert loaded.loaded_index is not None and loaded.loaded_index.factory == "ExactIVF8"
    users = dataset.user_ids.to_list()[:5]
    assert loaded.recommend(users, k=5).equals(indexed.recommend(users, k=5))


def test_a_small_catalog_saves_no_index(pipeline, tmp_path):
    pipeline.save(tmp_path / "model")
    assert not (tmp_path / "model" / INDEX_FILE).exists()
    assert PersonaPipeline.load(tmp_path / "model").loaded_index is None


def test_an_index_from_another_model_is_refused_on_load(pipeline, dataset, tiny_persona, tmp_path):
    through_index(pipeline).save(tmp_path / "a")
    other = PersonaPipeline.fit(dataset, replace(tiny_persona, seed=1))
    through_index(other).save(tmp_path / "b")
    shutil.copy(tmp_path / "a" / INDEX_FILE, tmp_path / "b" / INDEX_FILE)  # the file and its
    meta_a = json.loads((tmp_path / "a" / "meta.json").read_text())       # metadata, re-hashed,
    meta_b = json.loads((tmp_path / "b" / "meta.json").read_text())       # so only the item
    meta_b["meta"]["retrieval"] = meta_a["meta"]["retrieval"]             # check can catch it
    (tmp_path / "b" / "meta.json").write_text(json.dumps(meta_b))
    manifest = json.loads((tmp_path / "b" / MANIFEST_FILE).read_text())
    manifest |= {name: _sha256(tmp_path / "b" / name) for name in (INDEX_FILE, "meta.json")}
    (tmp_path / "b" / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(IndexMismatchError, match="other item vectors"):
        PersonaPipeline.load(tmp_path / "b")


def test_a_corrupted_index_file_is_refused_on_load(pipeline, tmp_path):
    through_index(pipeline).save(tmp_path / "model")
    with (tmp_path / "model" / INDEX_FILE).open("ab") as stream:
        stream.write(b"x")
    with pytest.raises(ArtifactError, match=f"{INDEX_FILE} does not match its hash"):
        PersonaPipeline.load(tmp_path / "model")


@pytest.mark.integration
def test_bench_retrieval_quick_writes_the_contract_files(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.OFFLINE_ENV, "1")
    assert main(["bench", "retrieval", "--dataset", "synthetic", "--out", str(tmp_path), "--quick"]) == 0
    result = json.loads((tmp_path / "retrieval.json").read_text())
    assert result["suite"] == "retrieval" and result["dataset"] == "synthetic"
    rows = {row["method"]: row for row in result["rows"]}
    assert set(rows) == {"exhaustive", "implicit-als", "flat", "exact-ivf", "hnsw", "ivf-flat", "ivf-pq"}
    assert rows["flat"]["recall@10"] == 1.0 and rows["exact-ivf"]["recall@10"] == 1.0  # exact methods
    assert rows["flat"]["scored_per_user"] < rows["exhaustive"]["scored_per_user"]
    for row in result["rows"]:
        assert {"catalog", "n_items", "users_per_s", "build_s", "index_bytes", "certified_share"} <= set(row)
    assert "| catalog |" in (tmp_path / "retrieval.md").read_text()


def test_bench_retrieval_recall_counts_found_items_of_the_reference():
    from recsys_pref.bench.retrieval import recall

    assert recall(np.array([[1, 2, 3]]), np.array([[3, 4, -1]])) == 0.5
    assert np.isnan(recall(np.array([[1]]), np.array([[-1]])))


def test_retrieval_config_rejects_a_nonpositive_size():
    with pytest.raises(ValueError, match="min_items"):
        RetrievalConfig(min_items=0)


def test_pipeline_default_config_is_recorded_in_the_artifact(pipeline, tmp_path):
    pipeline.save(tmp_path / "model")
    meta = json.loads((tmp_path / "model" / "meta.json").read_text())["meta"]
    assert meta["retrieval"]["config"]["min_items"] == RetrievalConfig().min_items
    assert meta["retrieval"]["index"] is None
    assert Path(tmp_path / "model" / MANIFEST_FILE).is_file()


def test_bench_retrieval_on_a_named_dataset_fits_the_model_and_serves_its_users():
    from recsys_pref.bench.retrieval import RetrievalBenchConfig, run_retrieval

    named = replace(make_synthetic(n_users=60, n_items=50, n_personas=2, density=0.2, seed=5), name="tiny")
    result = run_retrieval(named, replace(RetrievalBenchConfig.quick(), users=20))
    assert {row["catalog"] for row in result.rows} == {"tiny"}
    assert {row["n_items"] for row in result.rows} == {50}
    exact = [row for row in result.rows if row["method"] in ("flat", "exact-ivf")]
    assert len(exact) == 2 and all(row["recall@10"] == 1.0 for row in exact)


def test_artifact_extra_files_must_have_plain_unreserved_names(tmp_path):
    from recsys_pref.models.artifact import save_artifact

    for name in ("meta.json", "../escape.bin", ".hidden"):
        with pytest.raises(ValueError, match="plain and not reserved"):
            save_artifact(tmp_path / "a", "kind", {"x": np.zeros(1)}, {}, {name: b"data"})


def test_a_stored_retrieval_config_with_an_unknown_field_is_an_artifact_error():
    from recsys_pref.retrieval.serving import retrieval_config_from_dict

    with pytest.raises(ArtifactError, match="not one this version reads"):
        retrieval_config_from_dict({"index": {"factory": "Flat", "from_the_future": 1}})
