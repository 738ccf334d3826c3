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
