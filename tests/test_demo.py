"""`recsys-pref demo --quick` runs end to end on the bundled data."""
import contextlib
import io

import pytest

from recsys_pref.demo import DEMO_MODELS, run_demo

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def demo_run() -> tuple[list[dict], str]:
    """One quick demo run: its table rows and everything it printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rows = run_demo(quick=True)
    return rows, printed.getvalue()


def test_quick_demo_evaluates_every_model(demo_run) -> None:
    rows, _ = demo_run
    assert [row["model"] for row in rows] == list(DEMO_MODELS)
    assert all(0 <= row["ndcg@10"] <= 1 for row in rows)


def test_quick_demo_explains_a_users_personas_and_recommendations(demo_run) -> None:
    _, output = demo_run
    assert "persona 0" in output and "Recommendations (persona satisfied" in output


def test_quick_demo_onboards_a_new_user_by_ten_questions(demo_run) -> None:
    _, output = demo_run
    assert "Q10:" in output and "Q11:" not in output
    assert "Persona mix after 10 questions" in output and "Top 10 (" in output


def test_quick_demo_names_each_model_as_it_fits(demo_run) -> None:
    _, output = demo_run
    for number, name in enumerate(DEMO_MODELS, start=1):
        assert f"[{number}/{len(DEMO_MODELS)}] fitting {name} ..." in output


def test_quick_demo_explains_the_columns_and_interprets_the_table(demo_run) -> None:
    rows, output = demo_run
    assert "higher is better" in output and "lower is faster" in output
    ranked = sorted(rows, key=lambda row: -row["ndcg@10"])
    position = [row["model"] for row in ranked].index("persona") + 1
    assert f"the persona model ranks {'first' if position == 1 else position} of {len(rows)}" in output


def test_quick_demo_keeps_what_the_user_liked_apart_from_persona_predictions(demo_run) -> None:
    _, output = demo_run
    assert "What the user liked" in output and "predictions, not the user's history" in output
    assert "Recommendations per persona:" in output or "recommendations come from persona" in output


def test_interpretation_is_computed_from_the_numbers() -> None:
    from recsys_pref.demo import interpret_table

    rows = [{"model": "ease", "ndcg@10": 0.4}, {"model": "persona", "ndcg@10": 0.3}, {"model": "pop", "ndcg@10": 0.1}]
    assert "ranks 2 of 3 (0.3000), 25.0% below the best, ease" in interpret_table(rows)
    rows[1]["ndcg@10"] = 0.5
    assert "ranks first of 3 (0.5000), 25.0% above ease" in interpret_table(rows)
