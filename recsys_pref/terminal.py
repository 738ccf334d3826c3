"""`recsys-pref onboard --model DIR`: onboarding as an interactive terminal flow.

Each question lists its titles (with genres) numbered from 1; the user types the number of
the chosen title, `=` (no preference for a pair, none of these for a choice question), `?`
(don't know) or `q` (stop early; the end of input, Ctrl-D, does the same). Ctrl-C stops at once
and offers to save the state. After the last question it prints the recommendations with
the persona each one satisfies, and the user's persona mix in words.

The questions come from the learned interview tree (onboarding.tree) saved beside the model as
`interview_tree.json`; the first `onboard` of a model grows it from the artifact's training
users (seen items as known, positives as liked) and saves it (`--policy information`: no
tree, the information criterion alone). A saved state (`--state-out`) resumes with
`--state-in`: the same tree path, the same next question; a state from another model or tree
version is refused with the reason.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from recsys_pref.core.files import atomic_write_text
from recsys_pref.onboarding.questions import QuestionConfig
from recsys_pref.onboarding.session import Onboarder, OnboardingConfig, OnboardingState, build_onboarder
from recsys_pref.onboarding.tree import TREE_FILE, Interviewees, InterviewTree, TreeConfig, binary_preference, grow_tree
from recsys_pref.pipeline import PersonaPipeline

PROMPT = "your answer (number, = for {equal}, ? for don't know, q to stop): "
POLICIES = ("tree", "information")


def interview_tree(pipeline: PersonaPipeline, model_dir: Path, config: TreeConfig = TreeConfig(),
                   write: Callable[[str], None] | None = None) -> InterviewTree:
    """The artifact's interview tree: read from `model_dir/interview_tree.json` (TreeError if it
    was grown for another model), or grown from the artifact's training users and saved there."""
    path = Path(model_dir) / TREE_FILE
    if path.exists():
        return InterviewTree.load(path, pipeline.model)
    (write or print)(f"growing the interview tree for this model (once; saved to {path})")
    preference, threshold = binary_preference(pipeline.histories, pipeline.seen)
    active = (pipeline.histories.getnnz(axis=1) > 0)
    people = Interviewees.from_training(pipeline.histories[active], preference[active], threshold,
                                        config.holdout_share, np.random.default_rng(config.seed))
    catalog = pipeline.histories.getnnz(axis=0) > 0
    tree = grow_tree(pipeline.model, people, catalog, config)
    tree.save(path)
    return tree


def load_onboarder(model_dir: Path, config: OnboardingConfig, policy: str = "tree") -> Onboarder:
    """An Onboarder for the artifact written by `recsys-pref fit`: with the learned interview
    tree (`policy` "tree") or the information criterion alone ("information")."""
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    pipeline = PersonaPipeline.load(Path(model_dir))
    tree = interview_tree(pipeline, model_dir) if policy == "tree" else None
    return build_onboarder(pipeline.model, pipeline.histories, pipeline.item_ids, config, pipeline.items, tree=tree)


def describe_kind(onboarder: Onboarder, base: int) -> str:
    """A kind (base) in words: its label and two exemplar titles."""
    if onboarder.explainer is None:
        assert onboarder.tree is not None
        return "like " + ", ".join(onboarder.titles(onboarder.tree.kind_items[base][:3]))
    label = onboarder.explainer.bases()[base]
    return f"{label.label} (like {', '.join(onboarder.titles(label.exemplars[:2]))})"


def describe_item(onboarder: Onboarder, item: int) -> str:
    """"Title (Genre|Genre)" for a dense item index."""
    title = onboarder.titles([item])[0]
    if onboarder.item_genres and onboarder.item_genres[item]:
        return f"{title} ({'|'.join(onboarder.item_genres[item])})"
    return title


def parse_reply(reply: str, items: list[int], question_type: str) -> int | str | None:
    """A typed reply -> a dense item index, "tie"/"none", "unknown", "quit", or None if invalid."""
    reply = reply.strip().lower()
    if reply == "q":
        return "quit"
    if reply == "?":
        return "unknown"
    if reply == "=":
        return "tie" if question_type == "pair" else "none"
    if reply.isdigit() and 1 <= int(reply) <= len(items):
        return items[int(reply) - 1]
    return None


def mix_in_words(onboarder: Onboarder, state: OnboardingState) -> str:
    """"62% Drama & Romance, 38% Action & Sci-Fi"."""
    return ", ".join(f"{share:.0%} {name}" for name, share in onboarder.persona_mix(state))


def ask(onboarder: Onboarder, state: OnboardingState, read: Callable[[str], str] | None = None,
        write: Callable[[str], None] | None = None) -> None:
    """Ask until the onboarding is finished, `q` or the end of input (which stops the same way:
    the answers so far count). Ctrl-C (KeyboardInterrupt) propagates at once; the pending
    question is dropped first, so `state` stays a valid state to save."""
    read, write = read or input, write or print
    question_type = onboarder.config.questions.question_type
    heading = "Which of these two do you prefer?" if question_type == "pair" else \
        "Which one of these do you like most (or none)?"
    prompt = PROMPT.format(equal="no preference" if question_type == "pair" else "none")
    while not state.finished:
        items = onboarder.next_question_indices(state)
        kinds = onboarder.is_kind_question(state)
        title = "Which of these kinds do you like most (or none)?" if kinds else heading
        write(f"\nQuestion {len(state.questions)} of {state.max_questions}: {title}")
        for number, item in enumerate(items, start=1):
            write(f"  {number}. {describe_kind(onboarder, item) if kinds else describe_item(onboarder, item)}")
        reply = None
        try:
            while reply is None:
                reply = parse_reply(read(prompt), items, "choice" if kinds else question_type)
                if reply is None:
                    write(f"  please type a number from 1 to {len(items)}, =, ? or q")
        except EOFError:
            reply = "quit"
            write("\n(end of input: stopping here)")
        except KeyboardInterrupt:
            drop_pending(state)  # the pending question was not answered
            raise
        if reply == "quit":
            drop_pending(state)
            return
        onboarder.answer_index(state, reply)


def drop_pending(state: OnboardingState) -> None:
    """Forget the unanswered question (and its tree node), so `state` stays a valid state to save."""
    position = len(state.questions) - 1
    state.questions.pop()
    if len(state.path) > position:
        state.path.pop()
    if position in state.kinds:
        state.kinds.remove(position)


def show_results(onboarder: Onboarder, state: OnboardingState, k: int, write: Callable[[str], None] | None = None) -> None:
    """The recommendations at the state, with the persona each satisfies, and the persona mix."""
    write = write or print
    write(f"\nYour recommendations after {len(state.answers)} answers:")
    for row in onboarder.recommend(state, k).iter_rows(named=True):
        write(f"  {row['rank']:>2}. {row['title']}  — for your {row['persona_label']} side "
              f"(persona {row['persona']}, weight {row['persona_weight']:.2f})")
    write(f"\nYour taste mix: {mix_in_words(onboarder, state)}")


def run_flow(
    onboarder: Onboarder, k: int, read: Callable[[str], str] | None = None, write: Callable[[str], None] | None = None,
    state: OnboardingState | None = None,
) -> OnboardingState:
    """Ask (see `ask`), then print recommendations and the mix; returns the state."""
    read, write = read or input, write or print
    state = onboarder.start() if state is None else state
    ask(onboarder, state, read, write)
    show_results(onboarder, state, k, write)
    return state


def offer_to_save(state: OnboardingState, state_out: Path | None, read: Callable[[str], str] | None = None,
                  write: Callable[[str], None] | None = None) -> None:
    """After Ctrl-C: save the state to `state_out`, or ask for a path (Enter, end of input or
    another Ctrl-C: do not save)."""
    read, write = read or input, write or print
    if state_out is None:
        try:
            answer = read(f"save the state of your {len(state.answers)} answers? file path (Enter: no): ").strip()
        except (EOFError, KeyboardInterrupt):
            answer = ""
        if not answer:
            write("not saved")
            return
        state_out = Path(answer)
    atomic_write_text(Path(state_out), state.to_json())
    write(f"saved the onboarding state to {state_out}")


def resume_state(onboarder: Onboarder, path: Path) -> OnboardingState:
    """A saved state, checked against this onboarder (ValueError naming the problem)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"cannot read the onboarding state {path}: {error}") from error
    state = OnboardingState.from_json(text)
    onboarder.check_state(state)
    return state


def onboard_command(model_dir: Path, question_type: str, questions: int, k: int, state_out: Path | None,
                    state_in: Path | None = None, policy: str = "tree") -> int:
    """The `onboard` subcommand: load, run the flow on one thread (small tensors; extra threads
    only add synchronisation), optionally resume a saved state and save the final one as JSON.
    Ctrl-C stops at once, offers to save the state and exits with 130."""
    torch.set_num_threads(1)
    config = OnboardingConfig(QuestionConfig(question_type=question_type), max_questions=questions)
    onboarder = load_onboarder(model_dir, config, policy)
    state = onboarder.start() if state_in is None else resume_state(onboarder, state_in)
    try:
        ask(onboarder, state)
    except KeyboardInterrupt:
        print(f"\ninterrupted after {len(state.answers)} answers")
        offer_to_save(state, state_out)
        return 130
    show_results(onboarder, state, k)
    if state_out is not None:
        atomic_write_text(Path(state_out), state.to_json())
        print(f"saved the onboarding state to {state_out}")
    return 0
