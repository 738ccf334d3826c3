"""`recsys-pref bench amortization`: the cost of N users, shared side + cheap users against a model per user."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recsys_pref.bench.amortization import USER_COUNTS, cost_columns, fit_user_model
from recsys_pref.cli import main


def test_a_per_user_model_is_fitted_to_convergence_and_ranks_its_positives_first() -> None:
    rng = np.random.default_rng(0)
    features = np.hstack([rng.standard_normal((200, 8)), np.ones((200, 1))])
    taste = rng.standard_normal(8)
    history = np.argsort(-(features[:, :8] @ taste))[:10]  # the 10 items the taste likes most
    weights = fit_user_model(features, history, l2=0.01)
    ranked = np.argsort(-(features @ weights))
    assert len(set(ranked[:20]) & set(history)) >= 9
    assert np.corrcoef(weights[:8], taste)[0, 1] > 0.9


def test_costs_grow_linearly_in_users_after_the_shared_side() -> None:
    columns = cost_columns(shared_s=100.0, per_user_s=0.001, reference_per_user_s=0.1)
    assert columns["total_s@1e3"] == pytest.approx(101.0)
    assert columns["total_s@1e6"] == pytest.approx(1100.0)
    assert columns["per_user_s@1e7"] == pytest.approx(0.00101)
    assert columns["cheaper_x@1e6"] == pytest.approx(0.1 / 0.0011)
    assert len([key for key in columns if key.startswith("total_s@")]) == len(USER_COUNTS)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The quick amortization bench on a small synthetic set, run once for the tests below."""
    out = tmp_path_factory.mktemp("amortization")
    code = main(["bench", "amortization", "--dataset", "synthetic", "--synthetic", "n_users=300", "--synthetic",
                 "n_items=100", "--out", str(out), "--quick"])
    assert code == 0
    return out


def _rows(out: Path) -> list[dict]:
    return json.loads((out / "amortization.json").read_text())["rows"]


@pytest.mark.integration
def test_quick_amortization_bench_writes_a_row_per_method_and_the_plot(quick_run: Path) -> None:
    rows = _rows(quick_run)
    assert [row["method"].split(":")[0].split(" ")[0] for row in rows] == ["persona", "persona", "a"]
    assert all(row["per_user_s"] > 0 and 0 <= row["ndcg@10"] <= 1 for row in rows)
    assert rows[2]["cheaper_x@1e6"] == pytest.approx(1.0)
    assert (quick_run / "amortization.png").stat().st_size > 10_000


@pytest.mark.integration
def test_the_questions_row_is_the_interview_tree_and_pays_its_growing_in_its_shared_side_only(quick_run: Path) -> None:
    fold_in, interview, _ = _rows(quick_run)
    assert "interview tree" in interview["method"]
    assert interview["tree_nodes"] >= 1 and interview["tree_s"] > 0 and interview["select_ms"] > 0
    assert interview["shared_s"] == pytest.approx(fold_in["shared_s"] + interview["tree_s"])
    assert "tree_s" not in fold_in
