"""`recsys-pref bench scale`: training throughput per device, measured over a time box."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from recsys_pref.bench.scale import users_processed
from recsys_pref.cli import main


def test_users_processed_counts_the_short_last_batch_of_each_epoch() -> None:
    # 10 users in batches of 4: an epoch is 4 + 4 + 2 users in 3 steps
    assert users_processed(steps=3, n_users=10, batch_size=4) == 10
    assert users_processed(steps=5, n_users=10, batch_size=4) == 18
    assert users_processed(steps=0, n_users=10, batch_size=4) == 0


@pytest.mark.integration
def test_quick_scale_bench_reports_cpu_throughput(tmp_path: Path) -> None:
    code = main(["bench", "scale", "--dataset", "synthetic", "--synthetic", "n_users=300", "--synthetic", "n_items=100",
                 "--out", str(tmp_path), "--quick"])
    assert code == 0
    rows = json.loads((tmp_path / "scale.json").read_text())["rows"]
    cpu = rows[0]
    assert cpu["device"].startswith("cpu") and cpu["users"] == 300 and cpu["items"] == 100
    assert cpu["steps"] >= 1 and cpu["users_per_s"] > 0
    assert cpu["train_s"] < 30  # the two-second time box stopped training


def test_planted_users_are_sorted_by_user_with_distinct_items_from_the_catalog() -> None:
    import numpy as np

    from recsys_pref.bench.scale import PlantedCatalog, planted_users

    catalog = PlantedCatalog.make(n_items=300, seed=0)
    frame = planted_users(catalog, first_user=1000, n_users=50, positives_per_user=20, rng=np.random.default_rng(0))
    assert frame["user_id"].is_sorted() and frame["user_id"].min() == 1000 and frame["user_id"].max() == 1049
    assert not frame.is_duplicated().any()
    assert frame["item_id"].min() >= 0 and frame["item_id"].max() < 300
    assert 10 < frame.height / 50 <= 40


def test_a_planted_log_streams_the_same_users_whatever_the_chunk(tmp_path: Path) -> None:
    import polars as pl

    from recsys_pref.bench.scale import PlantedCatalog, write_planted_log

    catalog = PlantedCatalog.make(n_items=200, seed=0)
    rows = write_planted_log(tmp_path / "log.parquet", catalog, n_users=120, positives_per_user=10, seed=1,
                             chunk_users=40)
    log = pl.read_parquet(tmp_path / "log.parquet")
    assert log.height == rows and log["user_id"].is_sorted() and log["user_id"].n_unique() == 120


@pytest.mark.integration
def test_quick_batch_scale_bench_folds_in_stores_and_recommends_beside_als(tmp_path: Path) -> None:
    code = main(["bench", "scale", "--dataset", "synthetic", "--synthetic", "n_users=100", "--synthetic", "n_items=50",
                 "--models", "batch", "--out", str(tmp_path), "--quick"])
    assert code == 0
    rows = json.loads((tmp_path / "scale.json").read_text())["rows"]
    fold_in, ours, bare, als = rows
    assert "error" not in fold_in and "error" not in ours and "error" not in bare
    assert ours["model"].endswith("--explain full)") and bare["model"].endswith("--explain none)")
    assert fold_in["users"] == 2000 and fold_in["fold_in_users_per_s"] > 0 and fold_in["peak_rss_mib"] > 0
    assert fold_in["store_bytes_per_user"] > fold_in["state_bytes"]  # the state, its items and the row
    assert ours["model"].startswith("persona") and als["model"].startswith("implicit")
    assert ours["speedup_vs_als"] == pytest.approx(als["chunks_s"] / ours["chunks_s"])
