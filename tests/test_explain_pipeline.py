"""Explanations through PersonaPipeline, the CLI (`recommend` columns, `explain`) and the bench."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsys_pref.bench.explanations import ExplanationsBenchConfig, run_explanations
from recsys_pref.cli import main
from recsys_pref.data import UnknownIdError
from recsys_pref.explain.control import Control

EXPLANATION_COLUMNS = ["persona", "persona_weight", "persona_label", "score_share", "because_you_liked"]


def test_recommendations_carry_explanation_columns(pipeline):
    frame = pipeline.recommend([0, 1], k=5)
    assert set(EXPLANATION_COLUMNS) <= set(frame.columns)
    assert frame["persona_label"].str.starts_with("taste-").all()
    assert frame.schema["because_you_liked"] == pl.List(pl.Int64)


def test_because_you_liked_items_are_in_the_users_history(pipeline, dataset):
    frame = pipeline.recommend([0], k=10)
    seen = set(dataset.interactions.filter(pl.col("user_id") == 0)["item_id"].to_list())
    assert all(set(items) <= seen for items in frame["because_you_liked"].to_list())
    assert (frame["because_you_liked"].list.len() > 0).any()


def test_explained_shares_sum_to_the_score(pipeline):
    explanation = pipeline.explain(0, 7)
    assert sum(explanation.shares) == pytest.approx(explanation.score, abs=1e-5)
    assert sum(explanation.attention) == pytest.approx(1.0, abs=1e-6)


def test_explain_matches_the_recommendation_row(pipeline):
    row = pipeline.recommend([2], k=1).row(0, named=True)
    explanation = pipeline.explain(2, row["item_id"])
    assert explanation.persona == row["persona"]
    assert explanation.score == pytest.approx(row["score"], abs=1e-5)
    assert explanation.shares[explanation.persona] == pytest.approx(row["score_share"], abs=1e-5)
    assert ("because you liked" in str(explanation)) == bool(row["because_you_liked"])
    assert [item for item, _ in explanation.supporting] == row["because_you_liked"]


def test_explain_an_unknown_item_names_it(pipeline):
    with pytest.raises(UnknownIdError, match="unknown item id"):
        pipeline.explain(0, 12345)


def test_muting_a_persona_leaves_only_the_other(pipeline):
    frame = pipeline.recommend([0, 1, 2], k=5, control=Control(personas={0: 0.0}))
    assert (frame["persona"] == 1).all()
    assert np.allclose(frame["persona_weight"].to_numpy(), 1.0)
    assert np.allclose(frame["score_share"].to_numpy(), frame["score"].to_numpy(), atol=1e-5)


def test_an_empty_control_gives_the_plain_recommendations(pipeline):
    plain, adjusted = pipeline.recommend([3], k=5), pipeline.recommend([3], k=5, control=Control())
    assert plain["item_id"].to_list() == adjusted["item_id"].to_list()
    assert np.allclose(plain["score"].to_numpy(), adjusted["score"].to_numpy(), atol=1e-5)


def test_muting_a_base_by_label_changes_the_recommendations(pipeline):
    label = pipeline.explainer.bases[0].label
    plain = pipeline.recommend([0, 1, 2, 3], k=10)["score"].to_numpy()
    muted = pipeline.recommend([0, 1, 2, 3], k=10, control=Control(bases={label: 0.0}))["score"].to_numpy()
    assert not np.allclose(plain, muted)


def test_summary_names_a_persona_with_a_percentage(pipeline):
    text = pipeline.summary(0)
    assert "taste-" in text and "%" in text


def test_personas_frame_has_a_row_per_persona(pipeline):
    frame = pipeline.personas(0)
    assert frame["persona"].to_list() == [0, 1]
    assert frame["label"].str.starts_with("taste-").all()


@pytest.fixture
def saved_model(pipeline, tmp_path: Path) -> Path:
    return pipeline.save(tmp_path / "model")


def test_cli_recommend_writes_explanation_columns_to_parquet_and_csv(saved_model: Path, tmp_path: Path):
    users = tmp_path / "users.txt"
    users.write_text("0\n1\n")
    for name in ("recs.parquet", "recs.csv"):
        out = tmp_path / name
        assert main(["recommend", "--model", str(saved_model), "--users", str(users), "--k", "3", "--out", str(out)]) == 0
        frame = pl.read_parquet(out) if name.endswith(".parquet") else pl.read_csv(out)
        assert set(EXPLANATION_COLUMNS) <= set(frame.columns) and frame.height == 6


def test_cli_explain_prints_one_explanation(saved_model: Path, capsys):
    assert main(["explain", "--model", str(saved_model), "--user", "0", "--item", "5"]) == 0
    output = capsys.readouterr().out
    assert "for user 0" in output and "of the score" in output and "%" in output


def test_cli_explain_names_an_unknown_user(saved_model: Path, capsys):
    assert main(["explain", "--model", str(saved_model), "--user", "9999", "--item", "5"]) == 2
    assert "9999" in capsys.readouterr().err


@pytest.mark.integration
def test_bench_explanations_quick_writes_the_contract_rows(tmp_path: Path):
    assert main(["bench", "explanations", "--dataset", "synthetic", "--quick", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "explanations.json").read_text())
    rows = {row["model"]: row for row in result["rows"]}
    assert set(rows) == {"persona", "pref-linear"}
    assert rows["persona"]["removed"] == "persona" and rows["pref-linear"]["removed"] == "base"
    for row in rows.values():
        for key in ("faithfulness_explaining", "faithfulness_random", "mean_attention_top", "label_precision",
                    "item_label_precision"):
            assert 0.0 <= row[key] <= 1.0
    assert rows["pref-linear"]["mean_attention_top"] == 1.0


def test_bench_refuses_a_baseline_model(dataset):
    with pytest.raises(ValueError, match="persona models"):
        run_explanations(dataset, ExplanationsBenchConfig(models=("ease",)))
