"""`recsys-pref demo --quick` runs end to end on the bundled data."""
import pytest

from recsys_pref.demo import DEMO_MODELS, run_demo


@pytest.mark.integration
def test_quick_demo_evaluates_every_model_and_explains_a_user(capsys):
    rows = run_demo(quick=True)
    assert [row["model"] for row in rows] == list(DEMO_MODELS)
    assert all(0 <= row["ndcg@10"] <= 1 for row in rows)
    output = capsys.readouterr().out
    assert "persona 0" in output and "Recommendations (persona satisfied" in output
