"""`recsys-pref onboard` with the learned interview tree: grown once beside the model, resumed exactly."""
from __future__ import annotations

import json

import pytest

from recsys_pref.cli import main
from recsys_pref.onboarding.session import OnboardingState
from recsys_pref.onboarding.tree import TREE_FILE, InterviewTree


@pytest.fixture(scope="module")
def model_dir(pipeline, tmp_path_factory):
    return pipeline.save(tmp_path_factory.mktemp("artifact") / "model")


def onboard(monkeypatch, replies, *arguments):
    answers = iter(replies)
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    return main(["onboard", *map(str, arguments)])


def test_the_first_onboard_grows_the_tree_beside_the_model_and_the_next_reuses_it(model_dir, monkeypatch, capsys):
    (model_dir / TREE_FILE).unlink(missing_ok=True)
    assert onboard(monkeypatch, ["q"], "--model", model_dir) == 0
    assert "growing the interview tree" in capsys.readouterr().out
    saved = (model_dir / TREE_FILE).read_text()
    assert onboard(monkeypatch, ["q"], "--model", model_dir) == 0
    assert "growing the interview tree" not in capsys.readouterr().out
    assert (model_dir / TREE_FILE).read_text() == saved


def question_block(output: str, number: int, total: int) -> list[str]:
    """The heading and option lines of question `number` in the flow's output."""
    lines = output.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith(f"Question {number} of {total}"))
    end = next((index for index in range(start + 1, len(lines)) if not lines[index].startswith("  ")), len(lines))
    return lines[start:end]


def test_a_saved_state_resumes_with_the_same_next_question(model_dir, tmp_path, monkeypatch, capsys):
    state_path = tmp_path / "state.json"
    assert onboard(monkeypatch, ["=", "q"], "--model", model_dir, "--questions", 5, "--state-out", state_path) == 0
    assert len(OnboardingState.from_json(state_path.read_text()).answers) == 1
    asked = question_block(capsys.readouterr().out, 2, 5)
    assert onboard(monkeypatch, ["q"], "--model", model_dir, "--questions", 5, "--state-in", state_path) == 0
    assert question_block(capsys.readouterr().out, 2, 5) == asked


def test_a_state_from_another_tree_is_refused_with_a_clear_error(model_dir, tmp_path, monkeypatch, capsys):
    state_path = tmp_path / "state.json"
    assert onboard(monkeypatch, ["q"], "--model", model_dir, "--state-out", state_path) == 0
    data = json.loads(state_path.read_text())
    data["tree"] = "0123456789abcdef"
    state_path.write_text(json.dumps(data))
    capsys.readouterr()
    assert onboard(monkeypatch, ["q"], "--model", model_dir, "--state-in", state_path) == 2
    assert "interview tree" in capsys.readouterr().err


def test_a_truncated_state_file_is_refused_with_a_clear_error(model_dir, tmp_path, monkeypatch, capsys):
    state_path = tmp_path / "state.json"
    state_path.write_text('{"version": 2, "question_type": "cho')
    assert onboard(monkeypatch, ["q"], "--model", model_dir, "--state-in", state_path) == 2
    assert "not an onboarding state" in capsys.readouterr().err


def test_a_tree_file_of_another_model_is_refused(model_dir, pipeline, monkeypatch, capsys):
    tree = InterviewTree.load(model_dir / TREE_FILE) if (model_dir / TREE_FILE).exists() else None
    if tree is None:
        assert onboard(monkeypatch, ["q"], "--model", model_dir) == 0
        tree = InterviewTree.load(model_dir / TREE_FILE)
    original = (model_dir / TREE_FILE).read_text()
    try:
        (model_dir / TREE_FILE).write_text(original.replace(tree.model_fingerprint, "ffffffffffffffff"))
        assert onboard(monkeypatch, ["q"], "--model", model_dir) == 2
        assert "grown for model" in capsys.readouterr().err
    finally:
        (model_dir / TREE_FILE).write_text(original)
