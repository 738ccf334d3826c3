"""`recsys-pref fit`, `recommend` and `evaluate` on a small synthetic dataset."""
from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from recsys_pref.cli import main
from recsys_pref.config import load_model_config

TINY_PERSONA = """model: persona
params: {n_personas: 2, n_bases: 4, embedding_dim: 8, hidden_dim: 16, max_epochs: 2, patience: 1}
"""


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_PERSONA)
    return path


@pytest.fixture
def fitted_model(tiny_config: Path, tmp_path: Path) -> Path:
    out = tmp_path / "model"
    assert main(["fit", "--dataset", "synthetic", "--config", str(tiny_config), "--out", str(out)]) == 0
    return out


def test_a_bare_name_reads_the_file_under_conf():
    name, params = load_model_config("persona")
    assert name == "persona" and params["n_personas"] >= 2


def test_a_config_naming_an_unknown_model_is_refused(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: nope\n")
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        load_model_config(path)


def test_a_config_that_is_not_a_mapping_is_refused(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="'model' key"):
        load_model_config(path)


def test_fit_then_recommend_writes_parquet_with_personas(fitted_model: Path, tmp_path: Path):
    users = tmp_path / "users.txt"
    users.write_text("0\n1\n2\n")
    out = tmp_path / "recs.parquet"
    assert main(["recommend", "--model", str(fitted_model), "--users", str(users), "--k", "4", "--out", str(out)]) == 0
    frame = pl.read_parquet(out)
    assert frame.height == 12
    assert {"user_id", "rank", "item_id", "score", "persona", "persona_weight"} <= set(frame.columns)


def test_recommend_for_an_unknown_user_fails_with_a_clear_error(fitted_model: Path, tmp_path: Path, capsys):
    users = tmp_path / "users.txt"
    users.write_text("999999\n")
    assert main(["recommend", "--model", str(fitted_model), "--users", str(users)]) == 2
    assert "no history for user" in capsys.readouterr().err


def test_recommend_from_a_missing_model_names_the_directory(tmp_path: Path, capsys):
    users = tmp_path / "users.txt"
    users.write_text("0\n")
    assert main(["recommend", "--model", str(tmp_path / "absent"), "--users", str(users)]) == 2
    assert "absent" in capsys.readouterr().err


def test_fit_refuses_a_baseline_config(tmp_path: Path, capsys):
    assert main(["fit", "--dataset", "synthetic", "--config", "als", "--out", str(tmp_path / "m")]) == 2
    assert "persona models" in capsys.readouterr().err


def test_evaluate_reports_test_metrics_for_a_baseline(capsys):
    assert main(["evaluate", "--dataset", "synthetic", "--config", "popularity"]) == 0
    output = capsys.readouterr().out
    assert "ndcg@10" in output and "popularity on synthetic" in output
