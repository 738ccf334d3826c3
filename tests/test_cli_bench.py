"""End-to-end: `recsys-pref bench accuracy --quick` through `recsys_pref.cli.main`, checking the
result-file contract. Offline only (RECSYS_PREF_OFFLINE=1); ml-100k tests skip when the data
is not available."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from recsys_pref.cli import main
from recsys_pref.data import paths

pytestmark = pytest.mark.integration

ROW_KEYS = (
    "model",
    "ndcg@10",
    "ndcg@10_std",
    "ndcg@100",
    "recall@20",
    "recall@50",
    "coverage@10",
    "fit_s",
    "recommend_users_per_s",
    "params",
)


def strict_json(text: str):
    def reject(constant: str):
        raise ValueError(f"invalid JSON constant {constant}")

    return json.loads(text, parse_constant=reject)


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No downloads and no user cache from the machine running the tests."""
    monkeypatch.setenv(paths.OFFLINE_ENV, "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def data_root(monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shared datasets root (RECSYS_PREF_DATA, else <repo>/../shared/datasets) holding
    ml-100k, exported as RECSYS_PREF_DATA; skips when ml-100k is not there."""
    root = Path(os.environ.get(paths.DATA_ENV) or Path(__file__).resolve().parents[2] / "shared" / "datasets")
    lacking = paths.missing_files(root / "ml-100k", "ml-100k")
    if lacking:
        pytest.skip(f"ml-100k is not available: {root / 'ml-100k'} lacks {', '.join(lacking)} (set {paths.DATA_ENV})")
    monkeypatch.setenv(paths.DATA_ENV, str(root))
    return root


@pytest.fixture(scope="module")
def ml100k_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path]:
    """One quick accuracy run on ml-100k with popularity and ALS, shared by the contract tests."""
    root = Path(os.environ.get(paths.DATA_ENV) or Path(__file__).resolve().parents[2] / "shared" / "datasets")
    lacking = paths.missing_files(root / "ml-100k", "ml-100k")
    if lacking:
        pytest.skip(f"ml-100k is not available: {root / 'ml-100k'} lacks {', '.join(lacking)} (set {paths.DATA_ENV})")
    out = tmp_path_factory.mktemp("bench")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv(paths.DATA_ENV, str(root))
        monkeypatch.setenv(paths.OFFLINE_ENV, "1")
        code = main(["bench", "accuracy", "--dataset", "ml-100k", "--out", str(out), "--quick", "--models", "popularity", "als"])
    return code, out


def test_bench_accuracy_on_ml100k_exits_zero_and_writes_both_files(ml100k_run: tuple[int, Path]) -> None:
    code, out = ml100k_run
    assert code == 0
    assert (out / "accuracy.json").is_file()
    assert (out / "accuracy.md").is_file()


def test_bench_accuracy_json_follows_the_contract(ml100k_run: tuple[int, Path]) -> None:
    _, out = ml100k_run
    document = strict_json((out / "accuracy.json").read_text(encoding="utf-8"))
    assert document["suite"] == "accuracy"
    assert document["dataset"] == "ml-100k"
    assert document["protocol"] == "strong"
    assert isinstance(document["config"], dict)
    assert [row["model"] for row in document["rows"]] == ["popularity", "als"]
    for row in document["rows"]:
        missing = [key for key in ROW_KEYS if key not in row]
        assert not missing, f"{row['model']} row lacks {missing}"
        for key in ROW_KEYS[1:-1]:
            assert isinstance(row[key], (int, float)) and np.isfinite(row[key]), (row["model"], key, row[key])
        assert 0 <= row["ndcg@10"] <= 1 and 0 <= row["recall@20"] <= 1 and 0 < row["coverage@10"] <= 1
        assert isinstance(row["params"], dict)


def test_bench_accuracy_markdown_lists_both_models(ml100k_run: tuple[int, Path]) -> None:
    _, out = ml100k_run
    text = (out / "accuracy.md").read_text(encoding="utf-8")
    table_rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert any(line.startswith("| popularity |") for line in table_rows)
    assert any(line.startswith("| als |") for line in table_rows)


def test_als_beats_popularity_on_ndcg_at_100(ml100k_run: tuple[int, Path]) -> None:
    _, out = ml100k_run
    rows = {row["model"]: row for row in strict_json((out / "accuracy.json").read_text(encoding="utf-8"))["rows"]}
    assert rows["als"]["ndcg@100"] > rows["popularity"]["ndcg@100"]


def test_unknown_dataset_exits_with_code_2_and_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data_root: Path
) -> None:
    code = main(["bench", "accuracy", "--dataset", "no-such-data", "--out", str(tmp_path / "out")])
    assert code == 2
    assert "no-such-data" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_unknown_dataset_exits_with_code_2_without_any_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path / "empty"))
    code = main(["bench", "accuracy", "--dataset", "no-such-data", "--out", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert "no-such-data" in err and "error" in err


def test_bench_accuracy_on_a_csv_file_with_custom_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    lines = ["u,i,r"]
    for user in range(60):
        for item in rng.choice(30, size=8, replace=False):
            lines.append(f"{user},{item},{rng.integers(1, 6)}")
    data = tmp_path / "toy.csv"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    code = main(
        ["bench", "accuracy", "--dataset", str(data), "--user-col", "u", "--item-col", "i", "--rating-col", "r",
         "--out", str(out), "--quick", "--models", "popularity"]
    )
    assert code == 0, capsys.readouterr().err
    document = strict_json((out / "accuracy.json").read_text(encoding="utf-8"))
    assert document["dataset"] == "toy"
    assert document["protocol"] == "strong"
    assert [row["model"] for row in document["rows"]] == ["popularity"]
    assert all(key in document["rows"][0] for key in ROW_KEYS)
    assert (out / "accuracy.md").is_file()


def test_positive_threshold_option_keeps_only_high_ratings(tmp_path: Path) -> None:
    from recsys_pref.cli import _load, build_parser

    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,rating\n1,10,5\n1,11,2\n2,10,4\n")
    args = build_parser().parse_args(["bench", "accuracy", "--dataset", str(path), "--out", str(tmp_path),
                                      "--positive-threshold", "4"])
    assert _load(args).positives().height == 2


def test_set_option_fixes_a_hyperparameter_for_every_model_that_has_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main(["bench", "accuracy", "--dataset", "synthetic", "--out", str(out), "--quick", "--budget", "1",
                 "--models", "pref-linear", "popularity", "--set", "max_epochs=2", "--set", "hidden_dim=16"])
    assert code == 0
    rows = {row["model"]: row for row in strict_json((out / "accuracy.json").read_text(encoding="utf-8"))["rows"]}
    assert rows["pref-linear"]["config"]["max_epochs"] == 2 and rows["pref-linear"]["config"]["hidden_dim"] == 16
    assert rows["pref-linear"]["config"]["n_personas"] == 1  # still the preset underneath
    assert rows["popularity"]["params"] == {}


def test_set_option_naming_no_models_hyperparameter_exits_with_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["bench", "accuracy", "--dataset", "synthetic", "--out", str(tmp_path), "--quick",
                 "--models", "popularity", "--set", "max_epochs=2"])
    assert code == 2
    assert "max_epochs" in capsys.readouterr().err


def test_synthetic_option_sizes_the_generated_dataset(tmp_path: Path) -> None:
    from recsys_pref.cli import _load, build_parser

    args = build_parser().parse_args(["bench", "scale", "--dataset", "synthetic", "--out", str(tmp_path),
                                      "--synthetic", "n_users=300", "--synthetic", "n_items=120"])
    assert _load(args).to_csr().shape == (300, 120)


def test_quick_sweep_reports_validation_metrics_for_each_persona_configuration(tmp_path: Path) -> None:
    code = main(["bench", "accuracy", "--sweep", "--dataset", "synthetic", "--out", str(tmp_path), "--quick",
                 "--set", "max_epochs=2", "--set", "hidden_dim=16"])
    assert code == 0
    document = strict_json((tmp_path / "accuracy.json").read_text(encoding="utf-8"))
    assert "validation" in document["protocol"]
    configurations = [(row["n_personas"], row["n_bases"], row["temperature"]) for row in document["rows"]]
    assert configurations == [(1, 8, 1.0), (2, 8, 1.0), (2, 8, 3.0)]
    for row in document["rows"]:
        assert 0 < row["val_ndcg@100"] <= 1 and row["state_bytes"] == row["n_personas"] * (row["n_bases"] + 1) * 4


def test_set_option_reaches_the_explanations_bench(tmp_path: Path) -> None:
    code = main(["bench", "explanations", "--dataset", "synthetic", "--synthetic", "n_users=200", "--synthetic",
                 "n_items=60", "--set", "responsibility_scale=10", "--out", str(tmp_path), "--quick"])
    assert code == 0
    config = json.loads((tmp_path / "explanations.json").read_text())["config"]
    assert config["params"]["responsibility_scale"] == 10
