"""The issue-11 analyses of `bench/accuracy.py`: accuracy per quintile of history diversity,
and the encoder against the exact solve."""
from __future__ import annotations

import json

import numpy as np
import scipy.sparse as sp

from recsys_pref.bench.accuracy import (
    AccuracyBenchConfig,
    history_diversity,
    quintile_rows,
    run_diversity_quintiles,
    run_inference_comparison,
)
from recsys_pref.data import make_synthetic

SMALL = {"embedding_dim": 8, "als_iterations": 3}


def test_genre_entropy_is_zero_for_one_genre_and_log_two_for_an_even_split() -> None:
    categories = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    history = sp.csr_matrix(np.array([[1.0, 1.0, 0.0], [1.0, 0.0, 1.0]]))
    diversity, description = history_diversity(history, categories, np.eye(3))
    np.testing.assert_allclose(diversity, [0.0, np.log(2)], atol=1e-12)
    assert "genres" in description


def test_factor_spread_is_zero_for_aligned_items_and_one_for_opposite_items() -> None:
    embeddings = np.array([[1.0, 0.0], [2.0, 0.0], [-1.0, 0.0]])
    history = sp.csr_matrix(np.array([[1.0, 1.0, 0.0], [1.0, 0.0, 1.0]]))
    diversity, description = history_diversity(history, None, embeddings)
    np.testing.assert_allclose(diversity, [0.0, 1.0], atol=1e-12)
    assert "factor space" in description


def test_quintile_rows_split_users_into_five_equal_groups() -> None:
    diversity = np.arange(50, dtype=float)
    rows = quintile_rows("persona", 2, diversity, ndcg=diversity, recall=np.ones(50))
    assert [row["users"] for row in rows] == [10.0] * 5
    assert rows[0]["ndcg@100"] == np.mean(np.arange(10)) and rows[4]["ndcg@100"] == np.mean(np.arange(40, 50))


def test_diversity_quintiles_report_every_persona_count_and_quintile() -> None:
    dataset = make_synthetic(n_users=200, n_items=80, seed=0)
    result = run_diversity_quintiles(dataset, AccuracyBenchConfig(seeds=(0,), overrides=SMALL), personas=(1, 2),
                                     progress=False)
    keys = {(row["n_personas"], row["quintile"]) for row in result.rows}
    assert keys == {(m, q) for m in (1, 2) for q in range(6)}
    assert all(0 <= row["ndcg@100"] <= 1 for row in result.rows)


def test_inference_comparison_has_one_row_per_inference() -> None:
    dataset = make_synthetic(n_users=200, n_items=80, seed=0)
    config = AccuracyBenchConfig(seeds=(0,), overrides=SMALL | {"max_epochs": 2, "hidden_dim": 8})
    result = run_inference_comparison(dataset, config, repeats=1, progress=False)
    assert [row["inference"] for row in result.rows] == ["exact", "encoder"]
    assert all(row["fold_in_users_per_s"] > 0 and 0 <= row["ndcg@100"] <= 1 for row in result.rows)


def test_cli_writes_the_quintile_table(tmp_path) -> None:
    from recsys_pref.cli import main

    assert main(["bench", "accuracy", "--dataset", "synthetic", "--synthetic", "n_users=200", "--synthetic",
                 "n_items=80", "--models", "diversity-quintiles", "--quick", "--set", "embedding_dim=8",
                 "--set", "als_iterations=3", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "accuracy.json").read_text())["rows"]
    assert {(row["n_personas"], row["quintile"]) for row in rows} == {(m, q) for m in (1, 2) for q in range(6)}


def test_cli_writes_the_encoder_against_exact_table(tmp_path) -> None:
    from recsys_pref.cli import main

    assert main(["bench", "accuracy", "--dataset", "synthetic", "--synthetic", "n_users=200", "--synthetic",
                 "n_items=80", "--models", "exact-vs-encoder", "--quick", "--set", "embedding_dim=8",
                 "--set", "hidden_dim=8", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "accuracy.json").read_text())["rows"]
    assert [row["inference"] for row in rows] == ["exact", "encoder"]
