"""Specification of the benchmark result files (DIR/SUITE.json, DIR/SUITE.md) in recsys_pref.bench.results."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from recsys_pref.bench.results import SUITES, BenchResult, markdown_table, write_result


def strict_json(text: str):
    """json.loads that refuses NaN / Infinity, as every strict JSON reader does."""

    def reject(constant: str):
        raise ValueError(f"invalid JSON constant {constant}")

    return json.loads(text, parse_constant=reject)


def result(**overrides) -> BenchResult:
    fields = dict(
        suite="accuracy",
        dataset="toy",
        protocol="strong",
        config={"seeds": [0], "budget": 2},
        rows=[
            {"model": "popularity", "ndcg@10": 0.125, "ndcg@10_std": 0.01, "fit_s": 0.5, "params": {}},
            {"model": "als", "ndcg@10": 0.25, "ndcg@10_std": 0.02, "fit_s": 1.5, "params": {"factors": 64}},
        ],
        command="recsys-pref bench accuracy --dataset toy",
    )
    return BenchResult(**(fields | overrides))


def test_writes_suite_json_and_md_into_the_directory(tmp_path: Path) -> None:
    json_path, md_path = write_result(result(), tmp_path)
    assert json_path == tmp_path / "accuracy.json"
    assert md_path == tmp_path / "accuracy.md"
    assert json_path.is_file() and md_path.is_file()


def test_creates_the_output_directory(tmp_path: Path) -> None:
    json_path, _ = write_result(result(), tmp_path / "a" / "b")
    assert json_path.is_file()


def test_json_has_the_contract_keys(tmp_path: Path) -> None:
    json_path, _ = write_result(result(), tmp_path)
    document = strict_json(json_path.read_text(encoding="utf-8"))
    assert {"suite", "dataset", "protocol", "config", "rows"} <= set(document)
    assert document["suite"] == "accuracy"
    assert document["dataset"] == "toy"
    assert document["protocol"] == "strong"
    assert document["config"] == {"seeds": [0], "budget": 2}
    assert document["command"] == "recsys-pref bench accuracy --dataset toy"


def test_json_rows_keep_metric_names_and_values(tmp_path: Path) -> None:
    json_path, _ = write_result(result(), tmp_path)
    rows = strict_json(json_path.read_text(encoding="utf-8"))["rows"]
    assert [row["model"] for row in rows] == ["popularity", "als"]
    assert rows[1]["ndcg@10"] == 0.25
    assert rows[1]["ndcg@10_std"] == 0.02
    assert rows[1]["params"] == {"factors": 64}


def test_nan_metrics_are_written_as_null(tmp_path: Path) -> None:
    rows = [{"model": "x", "ndcg@10": float("nan"), "recall@20": 0.5}]
    json_path, _ = write_result(result(rows=rows), tmp_path)
    document = strict_json(json_path.read_text(encoding="utf-8"))
    assert document["rows"][0]["ndcg@10"] is None
    assert document["rows"][0]["recall@20"] == 0.5


def test_numpy_scalars_are_written_as_plain_numbers(tmp_path: Path) -> None:
    rows = [{"model": "x", "ndcg@10": np.float64(0.5), "n_users": np.int64(7), "fit_s": np.float32(0.25)}]
    json_path, _ = write_result(result(rows=rows), tmp_path)
    row = strict_json(json_path.read_text(encoding="utf-8"))["rows"][0]
    assert row == {"model": "x", "ndcg@10": 0.5, "n_users": 7, "fit_s": 0.25}


def test_numpy_float32_nan_is_written_as_null(tmp_path: Path) -> None:
    rows = [{"model": "x", "ndcg@10": np.float32("nan")}]
    json_path, _ = write_result(result(rows=rows), tmp_path)
    assert strict_json(json_path.read_text(encoding="utf-8"))["rows"][0]["ndcg@10"] is None


def test_nested_nan_is_written_as_null(tmp_path: Path) -> None:
    rows = [{"model": "x", "params_by_seed": [{"alpha": float("nan")}]}]
    config = {"budget": 2, "threshold": float("nan")}
    json_path, _ = write_result(result(rows=rows, config=config), tmp_path)
    document = strict_json(json_path.read_text(encoding="utf-8"))
    assert document["rows"][0]["params_by_seed"] == [{"alpha": None}]
    assert document["config"]["threshold"] is None


def test_markdown_has_a_heading_and_a_table_row_per_row(tmp_path: Path) -> None:
    _, md_path = write_result(result(), tmp_path)
    text = md_path.read_text(encoding="utf-8")
    assert "accuracy" in text and "toy" in text and "strong" in text
    assert "recsys-pref bench accuracy --dataset toy" in text
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert table[0] == "| model | ndcg@10 | fit_s | params |"
    assert set(table[1].replace("|", "")) == {"-"}
    assert len(table) == 4
    assert table[2].startswith("| popularity |") and table[3].startswith("| als |")


def test_std_column_is_shown_as_mean_plus_minus_std() -> None:
    table = markdown_table([{"model": "als", "ndcg@10": 0.25, "ndcg@10_std": 0.02}])
    assert "ndcg@10_std" not in table
    assert "0.2500 ± 0.0200" in table


def test_nan_cells_are_shown_as_a_dash() -> None:
    table = markdown_table([{"model": "als", "ndcg@10": float("nan")}])
    assert "nan" not in table.lower()
    assert "| als | – |" in table


def test_explicit_columns_select_and_order_the_table(tmp_path: Path) -> None:
    _, md_path = write_result(dataclasses.replace(result(), columns=["fit_s", "model"]), tmp_path)
    table = [line for line in md_path.read_text(encoding="utf-8").splitlines() if line.startswith("|")]
    assert table[0] == "| fit_s | model |"
    assert table[2] == "| 0.5000 | popularity |"


def test_rows_missing_a_column_get_an_empty_cell() -> None:
    table = markdown_table([{"model": "a", "x": 1.0}, {"model": "b"}])
    assert table.splitlines()[-1] == "| b |  |"


def test_empty_rows_give_a_placeholder() -> None:
    assert markdown_table([]) == "_no rows_\n"


def test_unknown_suite_is_rejected_and_nothing_is_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown suite"):
        write_result(result(suite="speed"), tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suite", SUITES)
def test_every_known_suite_is_accepted(tmp_path: Path, suite: str) -> None:
    json_path, md_path = write_result(result(suite=suite), tmp_path)
    assert json_path.name == f"{suite}.json" and md_path.name == f"{suite}.md"


def test_no_temporary_files_are_left_behind(tmp_path: Path) -> None:
    write_result(result(), tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["accuracy.json", "accuracy.md"]
