"""Bad input, through the command line and the Python API (issue 16): every case ends in one
clear message naming the problem, a non-zero exit status on the command line, no traceback, and
no state changed (no output written, the saved artifact byte for byte as it was).

One tiny fitted artifact is shared by the whole file; every corrupted artifact is a copy of it.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl
import pytest

from recsys_pref.cli import main
from recsys_pref.data import UntrainableDatasetError, from_frame, load_dataset
from recsys_pref.onboarding import OnboardingConfig, OnboardingState, build_onboarder
from recsys_pref.onboarding.session import OnboardingError
from recsys_pref.pipeline import PersonaPipeline

TINY_PERSONA = "model: persona\nparams: {n_personas: 2, n_bases: 4, embedding_dim: 8, max_epochs: 2, progress: false}\n"


# -- fixtures -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a tiny fitted artifact (`model/`), a users file and small data files."""
    root = tmp_path_factory.mktemp("bad_input")
    assert main(["fit", "--dataset", "synthetic", "--synthetic", "n_users=60", "--synthetic", "n_items=30",
                 "--config", _write(root / "tiny.yaml", TINY_PERSONA), "--out", str(root / "model")]) == 0
    _write(root / "users.txt", "0\n1\n")
    _write(root / "one_user.csv", "user_id,item_id,rating\n1,1,5\n1,2,5\n1,3,4\n")
    _write(root / "one_item.csv", "user_id,item_id,rating\n1,1,5\n2,1,5\n3,1,4\n")
    _write(root / "low.csv", "user_id,item_id,rating\n1,1,1\n2,2,1\n3,1,2\n")
    _write(root / "no_user_col.csv", "person,x\n1,2\n")
    return root


@pytest.fixture(scope="module")
def pipeline_(workspace: Path) -> PersonaPipeline:
    return PersonaPipeline.load(workspace / "model")


@pytest.fixture(scope="module")
def onboarder(pipeline_: PersonaPipeline):
    return build_onboarder(pipeline_.model, pipeline_.histories, pipeline_.item_ids, OnboardingConfig(max_questions=3),
                           pipeline_.items)


def _write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def _tree_hash(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of the command line, argparse's usage errors included."""
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


def _assert_refused(code: int, out: str, err: str, message: str) -> None:
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err
    assert message.lower() in err.lower(), err
    assert err.startswith("recsys-pref") or err.startswith("usage:"), err


# -- the command line: usage errors, refused before anything loads ---------------------------
USAGE_ERRORS = {
    "recommend --k 0": (["recommend", "--model", "M", "--users", "U", "--k", "0"], "must be >= 1"),
    "recommend --k negative": (["recommend", "--model", "M", "--users", "U", "--k", "-3"], "must be >= 1"),
    "recommend --k text": (["recommend", "--model", "M", "--users", "U", "--k", "ten"], "whole number"),
    "recommend --k fraction": (["recommend", "--model", "M", "--users", "U", "--k", "2.5"], "whole number"),
    "recommend --out .txt": (["recommend", "--model", "M", "--users", "U", "--out", "recs.txt"], "no known extension"),
    "recommend --out no suffix": (["recommend", "--model", "M", "--users", "U", "--out", "recs"], "no known extension"),
    "recommend --filter-seen maybe": (["recommend", "--model", "M", "--users", "U", "--filter-seen", "maybe"],
                                      "invalid choice"),
    "recommend --unknown-users maybe": (["recommend", "--model", "M", "--users", "U", "--unknown-users", "x"],
                                        "invalid choice"),
    "onboard --k 0": (["onboard", "--model", "M", "--k", "0"], "must be >= 1"),
    "onboard --questions 0": (["onboard", "--model", "M", "--questions", "0"], "must be >= 1"),
    "onboard --question-type quiz": (["onboard", "--model", "M", "--question-type", "quiz"], "invalid choice"),
    "bench --seeds 0": (["bench", "accuracy", "--dataset", "synthetic", "--out", "O", "--seeds", "0"], "must be >= 1"),
    "bench --seeds negative": (["bench", "accuracy", "--dataset", "synthetic", "--out", "O", "--seeds", "-2"],
                               "must be >= 1"),
    "bench --budget 0": (["bench", "accuracy", "--dataset", "synthetic", "--out", "O", "--budget", "0"], "must be >= 1"),
    "bench unknown suite": (["bench", "speed", "--dataset", "synthetic", "--out", "O"], "invalid choice"),
    "bench --set without =": (["bench", "accuracy", "--dataset", "synthetic", "--out", "O", "--set", "seed"],
                              "expected KEY=VALUE"),
    "evaluate --protocol unknown": (["evaluate", "--dataset", "synthetic", "--protocol", "random"], "invalid choice"),
    "fit without --out": (["fit", "--dataset", "synthetic"], "required: --out"),
}


@pytest.mark.parametrize("case", USAGE_ERRORS, ids=list(USAGE_ERRORS))
def test_usage_errors_exit_2_with_the_reason_before_anything_runs(case, tmp_path, monkeypatch, capsys):
    argv, message = USAGE_ERRORS[case]
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(argv, capsys)
    _assert_refused(code, out, err, message)
    assert list(tmp_path.iterdir()) == []


# -- the command line: configurations and data, refused before training ----------------------
CONFIGS = {
    "unknown top-level key": ("model: persona\nparamz:\n  n_personas: 3\n", "unknown top-level key(s) paramz"),
    "wrong-typed persona value": ("model: persona\nparams: {n_personas: two}\n", "n_personas must be int"),
    "wrong-typed float": ("model: persona\nparams: {temperature: warm}\n", "temperature must be float"),
    "bool for a number": ("model: persona\nparams: {n_bases: true}\n", "n_bases must be int"),
    "unknown hyperparameter": ("model: persona\nparams: {n_persona: 3}\n", "no field(s) n_persona"),
    "value out of range": ("model: persona\nparams: {n_personas: 0}\n", "n_personas must be >= 1"),
    "not a mapping": ("- persona\n", "must be a mapping"),
    "invalid YAML": ("model: [persona\n", "not valid YAML"),
    "unknown model": ("model: nope\n", "unknown model 'nope'"),
    "params not a mapping": ("model: persona\nparams: [1, 2]\n", "'params' must be a mapping"),
    "baseline for fit": ("model: ease\nparams: {}\n", "`fit` saves persona models"),
}


@pytest.mark.parametrize("case", CONFIGS, ids=list(CONFIGS))
def test_fit_refuses_a_bad_configuration_and_writes_nothing(case, tmp_path, capsys):
    text, message = CONFIGS[case]
    code, out, err = _run(["fit", "--dataset", "synthetic", "--config", _write(tmp_path / "c.yaml", text),
                           "--out", str(tmp_path / "model")], capsys)
    _assert_refused(code, out, err, message)
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize("text, message", [
    ("model: ease\nparams: {l2: big}\n", "EASEConfig.l2 must be float"),
    ("model: als\nparams: {factors: 8.5}\n", "factors must be int"),
    ("model: itemknn\nparam: {K: 5}\n", "unknown top-level key(s) param"),
], ids=["ease wrong type", "als wrong type", "itemknn misspelt params"])
def test_evaluate_refuses_a_bad_configuration_of_any_model(text, message, tmp_path, capsys):
    code, out, err = _run(["evaluate", "--dataset", "synthetic", "--config", _write(tmp_path / "c.yaml", text)], capsys)
    _assert_refused(code, out, err, message)


DATA = {
    "missing --data-dir": (["--dataset", "ml-latest-small", "--data-dir", "{tmp}/nowhere"], "does not exist"),
    "--data-dir a file": (["--dataset", "ml-latest-small", "--data-dir", "{ws}/users.txt"], "does not exist"),
    "generator args for a named dataset": (["--dataset", "ml-latest-small", "--synthetic", "n_users=5"],
                                           "only 'synthetic' takes generator arguments"),
    "generator args for a file": (["--dataset", "{ws}/one_user.csv", "--synthetic", "n_users=5"],
                                  "only 'synthetic' takes generator arguments"),
    "unknown generator argument": (["--dataset", "synthetic", "--synthetic", "users=5"], "no argument(s) users"),
    "wrong-typed generator argument": (["--dataset", "synthetic", "--synthetic", "n_users=many"],
                                       "n_users must be a whole number"),
    "one user": (["--dataset", "{ws}/one_user.csv"], "1 user(s) and 3 item(s)"),
    "one item": (["--dataset", "{ws}/one_item.csv"], "3 user(s) and 1 item(s)"),
    "no positives": (["--dataset", "{ws}/low.csv", "--positive-threshold", "4"], "0 user(s) and 0 item(s)"),
    "missing file": (["--dataset", "{tmp}/absent.csv"], "does not exist"),
    "unknown dataset": (["--dataset", "ml-999"], "unknown dataset 'ml-999'"),
    "missing id column": (["--dataset", "{ws}/no_user_col.csv"], "missing user id column"),
}


@pytest.mark.parametrize("command", ["fit", "evaluate"])
@pytest.mark.parametrize("case", DATA, ids=list(DATA))
def test_bad_data_is_refused_before_training(case, command, workspace, tmp_path, capsys):
    options, message = DATA[case]
    options = [option.format(tmp=tmp_path, ws=workspace) for option in options]
    out_option = ["--out", str(tmp_path / "model")] if command == "fit" else []
    code, out, err = _run([command, *options, "--config", _write(tmp_path / "c.yaml", TINY_PERSONA), *out_option], capsys)
    _assert_refused(code, out, err, message)
    assert not (tmp_path / "model").exists()


def test_demo_refuses_a_missing_data_dir(tmp_path, capsys):
    code, out, err = _run(["demo", "--quick", "--data-dir", str(tmp_path / "nowhere")], capsys)
    _assert_refused(code, out, err, "does not exist")


# -- the command line: serving from an artifact ----------------------------------------------
SERVING = {
    "missing model": (["recommend", "--model", "{tmp}/none", "--users", "{ws}/users.txt"], "no model artifact"),
    "missing users file": (["recommend", "--model", "{ws}/model", "--users", "{tmp}/u.txt"], "no users file"),
    "empty users file": (["recommend", "--model", "{ws}/model", "--users", "{tmp}/empty.txt"], "lists no user"),
    "users file without user_id": (["recommend", "--model", "{ws}/model", "--users", "{ws}/no_user_col.csv"],
                                   "needs a user_id column"),
    "unknown user": (["recommend", "--model", "{ws}/model", "--users", "{tmp}/unknown.txt"], "no history for user(s) 123456"),
    "user id of another type": (["recommend", "--model", "{ws}/model", "--users", "{tmp}/text.txt"],
                                "user ids must be Int64"),
    "unknown safeguards preset": (["recommend", "--model", "{ws}/model", "--users", "{ws}/users.txt",
                                   "--safeguards", "nonsense"], "nonsense"),
    "explain unknown item": (["explain", "--model", "{ws}/model", "--user", "0", "--item", "99999"],
                             "unknown item id(s): 99999"),
    "explain unknown user": (["explain", "--model", "{ws}/model", "--user", "424242", "--item", "1"],
                             "no history for user(s) 424242"),
    "onboard missing model": (["onboard", "--model", "{tmp}/none"], "no model artifact"),
}


@pytest.mark.parametrize("case", SERVING, ids=list(SERVING))
def test_serving_errors_name_the_problem_and_leave_the_artifact_as_it_was(case, workspace, tmp_path, capsys):
    argv, message = SERVING[case]
    _write(tmp_path / "unknown.txt", "123456\n")
    _write(tmp_path / "text.txt", "alice\n")
    _write(tmp_path / "empty.txt", "\n")
    before = _tree_hash(workspace / "model")
    code, out, err = _run([part.format(tmp=tmp_path, ws=workspace) for part in argv], capsys)
    _assert_refused(code, out, err, message)
    assert _tree_hash(workspace / "model") == before


def _rehash(directory: Path) -> None:
    """Rewrite MANIFEST.json so that the hash check passes and the content check is what is tested."""
    manifest = {path.name: hashlib.sha256(path.read_bytes()).hexdigest()
                for path in directory.iterdir() if path.name != "MANIFEST.json"}
    (directory / "MANIFEST.json").write_text(json.dumps(manifest))


def _meta_edit(edit: Callable[[dict], object]) -> Callable[[Path], None]:
    def apply(directory: Path) -> None:
        document = json.loads((directory / "meta.json").read_text())
        replaced = edit(document)
        (directory / "meta.json").write_text(json.dumps(document if replaced is None else replaced))
        _rehash(directory)
    return apply


def _set(path: tuple[str, ...], value: object) -> Callable[[dict], None]:
    def edit(document: dict) -> None:
        target = document
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return edit


def _drop(path: tuple[str, ...]) -> Callable[[dict], None]:
    def edit(document: dict) -> None:
        target = document
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return edit


def _manifest_text(text: str) -> Callable[[Path], None]:
    return lambda directory: (directory / "MANIFEST.json").write_text(text)


def _truncate_arrays(directory: Path) -> None:
    data = (directory / "arrays.safetensors").read_bytes()
    (directory / "arrays.safetensors").write_bytes(data[: len(data) // 2])
    _rehash(directory)


def _invalid_meta_json(directory: Path) -> None:
    (directory / "meta.json").write_text("{not json")
    _rehash(directory)


CORRUPTIONS = {
    "meta.json a list": (_meta_edit(lambda document: [document]), "must hold a JSON object"),
    "meta.json not JSON": (_invalid_meta_json, "is not valid JSON"),
    "meta a string": (_meta_edit(_set(("meta",), "x")), "'meta' must be a JSON dict"),
    "kind a number": (_meta_edit(_set(("kind",), 3)), "holds a 3 model"),
    "no user ids": (_meta_edit(_drop(("meta", "user_ids"))), "user_ids"),
    "items a number": (_meta_edit(_set(("meta", "items"), 7)), "does not match this version"),
    "an item id too many": (_meta_edit(lambda d: d["meta"]["item_ids"].append(10**6)), "does not match this version"),
    "a user id too few": (_meta_edit(lambda d: [d["meta"]["user_ids"].pop(), None][1]), "does not match this version"),
    "config value of the wrong type": (_meta_edit(_set(("meta", "model", "config", "n_personas"), "two")),
                                       "n_personas must be int"),
    "retrieval a list": (_meta_edit(_set(("meta", "retrieval"), [1])), "does not match this version"),
    "manifest a list": (_manifest_text("[]"), "must hold a JSON object"),
    "manifest not JSON": (_manifest_text("{"), "is not valid JSON"),
    "manifest hashes numbers": (_manifest_text('{"meta.json": 1, "arrays.safetensors": 2}'), "sha256 strings"),
    "arrays truncated": (_truncate_arrays, "cannot read"),
    "arrays missing": (lambda directory: (directory / "arrays.safetensors").unlink(), "missing arrays.safetensors"),
}


@pytest.mark.parametrize("case", CORRUPTIONS, ids=list(CORRUPTIONS))
def test_a_corrupted_artifact_is_refused_with_a_message(case, workspace, tmp_path, capsys):
    corrupt, message = CORRUPTIONS[case]
    model = tmp_path / "model"
    shutil.copytree(workspace / "model", model)
    corrupt(model)
    before = _tree_hash(model)
    code, out, err = _run(["recommend", "--model", str(model), "--users", str(workspace / "users.txt"),
                           "--out", str(tmp_path / "recs.csv")], capsys)
    _assert_refused(code, out, err, message)
    assert _tree_hash(model) == before and not (tmp_path / "recs.csv").exists()


# -- the Python API ----------------------------------------------------------------------------
API_ERRORS = {
    "k fraction": (lambda p: p.recommend([0], k=2.5), TypeError, "k must be a whole number"),
    "k text": (lambda p: p.recommend([0], k="10"), TypeError, "k must be a whole number"),
    "k bool": (lambda p: p.recommend([0], k=True), TypeError, "k must be a whole number"),
    "k zero": (lambda p: p.recommend([0], k=0), ValueError, "k must be >= 1"),
    "string user ids": (lambda p: p.recommend(["alice"], k=5), TypeError, "user ids must be Int64"),
    "no users": (lambda p: p.recommend([], k=5), ValueError, "no users given"),
    "unknown user": (lambda p: p.recommend([10**6], k=5), KeyError, "no history for user(s) 1000000"),
    "filter_seen unknown": (lambda p: p.recommend([0], filter_seen="maybe"), ValueError, "filter_seen must be one of"),
    "filter_seen bool": (lambda p: p.recommend([0], filter_seen=False), ValueError, "filter_seen must be one of"),
    "unknown_users unknown": (lambda p: p.recommend([0], unknown_users="skip"), ValueError, "unknown_users must be"),
    "history without item_id": (lambda p: p.recommend([7], history=pl.DataFrame({"user_id": [7]})), ValueError,
                                "missing ['item_id']"),
    "states of the wrong type": (lambda p: p.recommend([0], states=[1.0]), ValueError, "states must be a PersonaState"),
    "score a dict": (lambda p: p.score({"user_id": [0]}), TypeError, "polars DataFrame"),
    "score without item_id": (lambda p: p.score(pl.DataFrame({"user_id": [0]})), ValueError, "missing ['item_id']"),
    "score duplicate pairs": (lambda p: p.score(pl.DataFrame({"user_id": [0, 0], "item_id": [1, 1]})), ValueError,
                              "repeat"),
    "score unknown item": (lambda p: p.score(pl.DataFrame({"user_id": [0], "item_id": [10**6]})), KeyError,
                           "items the model does not know"),
    "explain unknown item": (lambda p: p.explain(0, 10**6), KeyError, "unknown item id(s)"),
}


@pytest.mark.parametrize("case", API_ERRORS, ids=list(API_ERRORS))
def test_the_python_api_refuses_bad_arguments_with_a_message(case, pipeline_):
    call, error, message = API_ERRORS[case]
    with pytest.raises(error) as raised:
        call(pipeline_)
    assert message in str(raised.value)


DATASETS = {
    "missing data_dir": (lambda tmp: load_dataset("ml-latest-small", data_dir=tmp / "nowhere"), "does not exist"),
    "generator arguments for ml-100k": (lambda tmp: load_dataset("ml-100k", n_users=5), "only 'synthetic'"),
    "empty frame": (lambda tmp: from_frame(pl.DataFrame({"user_id": [], "item_id": []})), "empty"),
    "one-user dataset fitted": (lambda tmp: PersonaPipeline.fit(from_frame(pl.DataFrame(
        {"user_id": [1, 1], "item_id": [1, 2]}))), "at least 2 users and 2 items"),
}


@pytest.mark.parametrize("case", DATASETS, ids=list(DATASETS))
def test_datasets_that_cannot_serve_are_refused(case, tmp_path):
    call, message = DATASETS[case]
    with pytest.raises((ValueError, TypeError)) as raised:
        call(tmp_path)
    assert message in str(raised.value)


def test_an_untrainable_dataset_is_refused_before_any_training(monkeypatch):
    monkeypatch.setattr("recsys_pref.pipeline.PersonaRecommender.fit", lambda *args: pytest.fail("trained"))
    with pytest.raises(UntrainableDatasetError):
        PersonaPipeline.fit(from_frame(pl.DataFrame({"user_id": [1, 2], "item_id": [1, 1]})))


# -- onboarding states and answers -----------------------------------------------------------
def _state_json(**changes: object) -> str:
    base = {"version": 1, "question_type": "choice", "max_questions": 3, "mean": [0.0, 0.0],
            "covariance": [[1.0, 0.0], [0.0, 1.0]], "questions": [[1, 2, 3]], "answers": [2], "seed": 0}
    return json.dumps(base | changes)


STATES = {
    "not JSON": ("{", "not an onboarding state"),
    "a list": ("[1]", "expected a JSON object"),
    "no version": (json.dumps({"question_type": "choice"}), "version None"),
    "newer version": (_state_json(version=3), "version 3"),
    "unknown field": (_state_json(colour="red"), "unknown field(s) ['colour']"),
    "missing mean": (json.dumps({"version": 1, "question_type": "choice", "max_questions": 3, "covariance": []}),
                     "missing field(s) ['mean']"),
    "mean of strings": (_state_json(mean=["a", "b"]), "mean must be a list of finite numbers"),
    "mean not finite": (_state_json(mean=[0.0, float("inf")]).replace("Infinity", "1e999"), "finite numbers"),
    "covariance wrong shape": (_state_json(covariance=[[1.0]]), "must be (2, 2)"),
    "covariance not positive-definite": (_state_json(covariance=[[1.0, 2.0], [2.0, 1.0]]), "positive-definite"),
    "covariance not symmetric": (_state_json(covariance=[[1.0, 0.5], [0.0, 1.0]]), "positive-definite"),
    "question type unknown": (_state_json(question_type="quiz"), "question_type must be"),
    "max_questions text": (_state_json(max_questions="ten"), "max_questions must be a whole number"),
    "seed fraction": (_state_json(seed=1.5), "seed must be a whole number"),
    "questions of text": (_state_json(questions=[["a", "b"]], answers=[]), "questions must be lists"),
    "answer maybe": (_state_json(answers=["maybe"]), "answer 1 is 'maybe'"),
    "answer not shown": (_state_json(answers=[7]), "answer 1 is 7"),
    "tie to a choice question": (_state_json(answers=["tie"]), "answer 1 is 'tie'"),
    "more answers than questions": (_state_json(answers=[2, 3]), "no longer than its questions"),
}


@pytest.mark.parametrize("case", STATES, ids=list(STATES))
def test_an_onboarding_state_of_the_wrong_shape_is_refused(case):
    text, message = STATES[case]
    with pytest.raises(ValueError) as raised:
        OnboardingState.from_json(text)
    assert message in str(raised.value)


def test_a_saved_state_reads_back(onboarder):
    state = onboarder.start()
    onboarder.answer(state, onboarder.next_question(state)[0])
    assert OnboardingState.from_json(state.to_json()) == state


@pytest.mark.parametrize("answer, message", [("maybe", "not an item of this model"), (10**6, "not an item of this model")])
def test_an_answer_that_is_neither_a_shown_item_nor_an_answer_word_is_refused(onboarder, answer, message):
    state = onboarder.start()
    onboarder.next_question(state)
    before = state.to_json()
    with pytest.raises(OnboardingError, match=message):
        onboarder.answer(state, answer)
    assert state.to_json() == before


def test_an_item_that_was_not_shown_is_refused(onboarder, pipeline_):
    state = onboarder.start()
    shown = onboarder.next_question(state)
    other = next(item for item in pipeline_.item_ids.to_list() if item not in shown)
    with pytest.raises(OnboardingError, match="was not shown"):
        onboarder.answer(state, other)
    assert state.answers == []


def test_a_dont_know_item_is_not_shown_again_in_the_next_question(onboarder):
    state = onboarder.start()
    previous = onboarder.next_question(state)
    for _ in range(2):  # questions 2 and 3, each after a "don't know"
        onboarder.answer(state, "unknown")
        shown = onboarder.next_question(state)
        assert not set(previous) & set(shown)
        previous = shown


def test_no_item_is_shown_in_three_questions_in_a_row(pipeline_):
    onboarder = build_onboarder(pipeline_.model, pipeline_.histories, pipeline_.item_ids,
                                OnboardingConfig(max_questions=6), pipeline_.items)
    state = onboarder.start()
    while not state.finished:
        onboarder.answer(state, onboarder.next_question(state)[0])  # always the first item shown
    for first, second, third in zip(state.questions, state.questions[1:], state.questions[2:]):
        assert not set(first) & set(second) & set(third)


# -- the interactive prompt: end of input and Ctrl-C -------------------------------------------
def _replies(monkeypatch: pytest.MonkeyPatch, *replies: object) -> None:
    """Feed `input()`: strings are typed, exception classes are raised."""
    queue = list(replies)

    def read(prompt: str = "") -> str:
        reply = queue.pop(0)
        if isinstance(reply, type):
            raise reply()
        return reply

    monkeypatch.setattr("builtins.input", read)


def test_end_of_input_at_the_prompt_ends_cleanly_with_the_answers_so_far(workspace, monkeypatch, capsys):
    _replies(monkeypatch, "1", EOFError)
    code, out, err = _run(["onboard", "--model", str(workspace / "model"), "--questions", "5", "--k", "3"], capsys)
    assert code == 0 and "Traceback" not in out + err, err
    assert "end of input" in out and "Your recommendations after 1 answers" in out


def test_ctrl_c_stops_at_once_and_saves_to_state_out(workspace, tmp_path, monkeypatch, capsys):
    _replies(monkeypatch, "1", KeyboardInterrupt)
    code, out, err = _run(["onboard", "--model", str(workspace / "model"), "--questions", "5",
                           "--state-out", str(tmp_path / "state.json")], capsys)
    assert code == 130 and "Traceback" not in out + err
    assert "interrupted after 1 answers" in out and "Your recommendations" not in out
    state = OnboardingState.from_json((tmp_path / "state.json").read_text())
    assert len(state.answers) == 1 and state.pending is None


def test_ctrl_c_offers_to_save_and_a_blank_reply_saves_nothing(workspace, tmp_path, monkeypatch, capsys):
    _replies(monkeypatch, KeyboardInterrupt, "")
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(["onboard", "--model", str(workspace / "model")], capsys)
    assert code == 130 and "not saved" in out and list(tmp_path.iterdir()) == []


def test_ctrl_c_offers_to_save_and_saves_where_the_user_says(workspace, tmp_path, monkeypatch, capsys):
    _replies(monkeypatch, "=", KeyboardInterrupt, str(tmp_path / "kept.json"))
    code, out, err = _run(["onboard", "--model", str(workspace / "model")], capsys)
    assert code == 130 and OnboardingState.from_json((tmp_path / "kept.json").read_text()).answers == ["none"]


# -- output that says what it is -------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".json", ".csv", ".parquet"])
def test_recommend_writes_the_format_its_out_suffix_names(suffix, workspace, tmp_path, capsys):
    out = tmp_path / f"recs{suffix}"
    code, _, _ = _run(["recommend", "--model", str(workspace / "model"), "--users", str(workspace / "users.txt"),
                       "--out", str(out)], capsys)
    assert code == 0
    read = {".json": pl.read_json, ".csv": pl.read_csv, ".parquet": pl.read_parquet}[suffix]
    frame = read(out)
    assert frame.height == 20 and frame["user_id"].to_list()[:1] == [0]


def test_recommend_reads_the_integer_ids_of_a_csv_users_file(workspace, tmp_path, capsys):
    users = _write(tmp_path / "users.csv", "user_id,note\n1,a\n0,b\n")
    code, _, _ = _run(["recommend", "--model", str(workspace / "model"), "--users", users, "--out",
                       str(tmp_path / "r.parquet")], capsys)
    assert code == 0
    assert pl.read_parquet(tmp_path / "r.parquet")["user_id"].unique(maintain_order=True).to_list() == [1, 0]


def test_recommend_k_far_above_the_catalog_is_capped(workspace, tmp_path, capsys):
    code, out, err = _run(["recommend", "--model", str(workspace / "model"), "--users", str(workspace / "users.txt"),
                           "--k", "1000000000", "--out", str(tmp_path / "r.parquet")], capsys)
    assert code == 0
    frame = pl.read_parquet(tmp_path / "r.parquet")
    assert frame.group_by("user_id").len()["len"].max() <= 30


def test_recommend_without_out_prints_every_column_and_row(workspace, capsys):
    code, out, _ = _run(["recommend", "--model", str(workspace / "model"), "--users", str(workspace / "users.txt")],
                        capsys)
    assert code == 0
    assert "because_you_liked" in out and "exploration" in out and "…" not in out
    assert out.count("\n") > 20


def test_evaluate_prints_one_metric_per_line_with_counts_as_integers(capsys):
    code, out, _ = _run(["evaluate", "--dataset", "synthetic", "--synthetic", "n_users=60", "--synthetic",
                         "n_items=30", "--config", "popularity"], capsys)
    assert code == 0
    assert "| metric | value |" in out
    line = next(line for line in out.splitlines() if line.startswith("| n_users"))
    assert np.isclose(float(line.split("|")[2]), round(float(line.split("|")[2]))) and "." not in line.split("|")[2]
