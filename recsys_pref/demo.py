"""`recsys-pref demo`: the main job end to end on the bundled ml-latest-small.

Fits every model on a strong-generalization split (held-out users folded in from 80% of their
positives), evaluates on the other 20% and prints the table; then shows one held-out user as
the persona model sees them: each persona with its top items and the genres that label it,
and the user's recommendations with the persona each one satisfies, without and with the
echo-chamber safeguards; then onboards a second held-out user by 10 questions. Models use their
documented default configurations (`recsys-pref bench accuracy` does the tuned comparison).

It explains itself to a newcomer: each model's fit is announced by name as it starts, a legend
says what each metric column measures and which direction is better, a sentence computed from
the table says where the persona model stands, what the user liked is kept apart from what each
persona predicts, and the persona mix of the recommendations is stated (including when all of
them come from one persona).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import polars as pl

from recsys_pref.onboarding.oracles import ProfileOracle, known_ratings
from recsys_pref.onboarding.tree import dataset_interviewees, grow_tree
from recsys_pref.core.tables import markdown_table
from recsys_pref.data import InteractionDataset, SplitConfig, load_dataset, make_split
from recsys_pref.data.splits import Split
from recsys_pref.evaluation.evaluate import evaluate
from recsys_pref.evaluation.tuning import build_model
from recsys_pref.models.persona import PersonaRecommender
from recsys_pref.onboarding import OnboardingConfig, build_onboarder
from recsys_pref.pipeline import PersonaPipeline
from recsys_pref.safeguards.config import load_safeguards

DEMO_DATASET = "ml-latest-small"
DEMO_MODELS = ("popularity", "itemknn", "als", "bpr", "ease", "persona")
TABLE_COLUMNS = ["model", "ndcg@10", "ndcg@100", "recall@20", "recall@50", "coverage@10", "fit_s"]
#: what each column of the table measures, and which direction is better
METRIC_LEGEND = (
    "ndcg@10, ndcg@100: how high the user's held-out movies rank in the top 10 / 100 (0 to 1, higher is better); "
    "recall@20, recall@50: share of the held-out movies found in the top 20 / 50 (higher is better); "
    "coverage@10: share of the catalog recommended to at least one user (higher = less concentrated on hits); "
    "fit_s: training time in seconds (lower is faster)."
)
RANKING_METRIC = "ndcg@10"
ANSWER_WORDS = {"none": "none of these", "unknown": "doesn't know them", "tie": "no preference"}


def run_demo(data_dir: Path | None = None, quick: bool = False, seed: int = 0) -> list[dict]:
    """Fit, evaluate and print; returns the table rows. `quick` trains the persona model for
    a few epochs only (for tests)."""
    dataset = load_dataset(DEMO_DATASET, data_dir=data_dir)
    print(dataset.summary())
    split = make_split(dataset, SplitConfig(seed=seed))
    print(f"strong generalization, seed {seed}: {len(split.test)} test users, {int(split.catalog.sum())} items ranked")
    popularity = np.asarray(split.train.sum(axis=0)).ravel()
    rows, persona = [], None
    for number, name in enumerate(DEMO_MODELS, start=1):
        print(f"[{number}/{len(DEMO_MODELS)}] fitting {name} ...", end=" ", flush=True)
        params = {"progress": False} | ({"max_epochs": 3} if quick else {}) if name == "persona" else {}
        model = build_model(name, params, seed)
        started = time.perf_counter()
        model.fit(split.train)
        fit_s = time.perf_counter() - started
        print(f"{fit_s:.1f} s; evaluating ...", end=" ", flush=True)
        result = evaluate(model, split.test, catalog=split.catalog, item_popularity=popularity)
        print(f"{RANKING_METRIC} {result.metrics[RANKING_METRIC]:.4f}", flush=True)
        rows.append({"model": name} | result.metrics | {"fit_s": fit_s})
        if isinstance(model, PersonaRecommender):
            persona = model
    print()
    print(markdown_table(rows, TABLE_COLUMNS))
    print(METRIC_LEGEND)
    print(interpret_table(rows))
    print()
    show_user(PersonaPipeline.from_model(persona, dataset, split.train), dataset, split)
    show_onboarding(persona, dataset, split)
    return rows


def interpret_table(rows: list[dict], model: str = "persona", metric: str = RANKING_METRIC) -> str:
    """A sentence on where `model` stands among `rows` on `metric`, computed from the numbers."""
    ranked = sorted(rows, key=lambda row: -row[metric])
    position = next(index for index, row in enumerate(ranked) if row["model"] == model)
    ours, best = ranked[position], ranked[0]
    if position == 0:
        runner_up = ranked[1]
        gap = (ours[metric] - runner_up[metric]) / runner_up[metric] if runner_up[metric] else float("inf")
        return (f"On {metric} the {model} model ranks first of {len(rows)} ({ours[metric]:.4f}), "
                f"{gap:.1%} above {runner_up['model']} ({runner_up[metric]:.4f}).")
    gap = (best[metric] - ours[metric]) / best[metric]
    below = ", ".join(row["model"] for row in ranked[:position])
    return (f"On {metric} the {model} model ranks {position + 1} of {len(rows)} ({ours[metric]:.4f}), "
            f"{gap:.1%} below the best, {best['model']} ({best[metric]:.4f}); ahead of it: {below}. "
            "These are untuned defaults on one split; `recsys-pref bench accuracy` tunes every model "
            "with the same budget. The persona model's case is the personas, explanations and "
            "onboarding shown next, at about this accuracy.")


def _titles(dataset: InteractionDataset, items: np.ndarray) -> list[str]:
    return dataset.items["title"].gather(items).to_list()


def _title_of(dataset: InteractionDataset, item_id: object) -> str:
    return _titles(dataset, dataset.item_ids.to_index(item_id))[0]


def show_user(pipeline: PersonaPipeline, dataset: InteractionDataset, split: Split, position: int = 0) -> None:
    """Print one held-out user's personas and explained recommendations, served by the pipeline
    from their fold-in history as a new user, without and with the echo-chamber safeguards."""
    history_row = split.test.fold_in[position]
    user_id = dataset.user_ids.to_external(split.test.users[position : position + 1])[0]
    history = pl.DataFrame({"user_id": [user_id] * history_row.nnz,
                            "item_id": dataset.item_ids.to_external(history_row.indices).tolist()})
    model = pipeline.model
    print(f"User {user_id}, served as a new user from {history_row.nnz} liked movies, "
          f"{model.config.n_personas} personas ({model.state_bytes} bytes of state)")
    print("What the user liked (a sample of their history):")
    for title in _titles(dataset, history_row.indices[:5]):
        print(f"  - {title}")
    print("What each persona predicts (the persona's own top movies: predictions, not the user's history):")
    for row in pipeline.personas(user_id, history=history).iter_rows(named=True):
        print(f"  persona {row['persona']} — {row['label']}: " + "; ".join(row["top_items"][:4]))
    plain = pipeline.recommend([user_id], 10, history=history)
    print(persona_mix_sentence(plain, model.config.n_personas))
    print("Recommendations (persona satisfied, attention weight; because you liked):")
    for row in plain.iter_rows(named=True):
        liked = "; ".join(_title_of(dataset, item) for item in row["because_you_liked"][:2])
        print(f"  {row['rank']:2d}. {_title_of(dataset, row['item_id'])}  [persona {row['persona']} "
              f"{row['persona_label']}, {row['persona_weight']:.0%}]" + (f"  because you liked {liked}" if liked else ""))
    guarded = pipeline.recommend([user_id], 10, history=history, safeguards=load_safeguards("safeguards"))
    print("Same user with echo-chamber safeguards (`--safeguards safeguards`): without | with")
    for without, with_ in zip(plain.iter_rows(named=True), guarded.iter_rows(named=True)):
        mark = " (exploration)" if with_["exploration"] else ""
        print(f"  {without['rank']:2d}. {_title_of(dataset, without['item_id'])[:40]:40s} | "
              f"{_title_of(dataset, with_['item_id'])[:40]}{mark}")


def persona_mix_sentence(recommended: pl.DataFrame, n_personas: int) -> str:
    """How many of the recommendations each persona satisfies, said plainly when one has them all."""
    counts = recommended.group_by("persona", "persona_label").len().sort("len", descending=True)
    if counts.height == 1 and n_personas > 1:
        row = counts.row(0, named=True)
        return (f"All {recommended.height} recommendations come from persona {row['persona']} "
                f"({row['persona_label']}): it holds the largest attention on every one of them, so the other "
                "persona(s) shape none of this top 10.")
    return "Recommendations per persona: " + ", ".join(
        f"persona {row['persona']} ({row['persona_label']}) {row['len']}" for row in counts.iter_rows(named=True))


def show_onboarding(model: PersonaRecommender, dataset: InteractionDataset, split: Split, position: int = 1,
                    questions: int = 10) -> None:
    """Onboard one held-out user by `questions` "which of these do you like most, or none?"
    questions, asked by the interview tree learned from the training users (onboarding.tree) and
    then the information criterion, answered from the user's own ratings outside their held-out
    targets (the onboarding bench's profile oracle), then print their persona mix and top 10,
    marking the held-out targets among them."""
    tree = grow_tree(model, dataset_interviewees(dataset, split.train), split.catalog, progress=False)
    onboarder = build_onboarder(model, split.train, dataset.item_ids, OnboardingConfig(max_questions=questions),
                                dataset.items, tree=tree)
    targets = split.test.targets[position].indices
    onboarder.pool = onboarder.pool[~np.isin(onboarder.pool, targets)]
    threshold = dataset.positive_threshold if dataset.positive_threshold is not None else -np.inf
    oracle = ProfileOracle(known_ratings(dataset, split, np.array([position]))[0], threshold)
    user_id = dataset.user_ids.to_external(split.test.users[position : position + 1])[0]
    print(f"Onboarding user {user_id} as a new user, by {questions} questions answered from their ratings:")
    state = onboarder.start()
    while not state.finished:
        shown = onboarder.next_question_indices(state)
        reply = oracle(shown, "choice")
        onboarder.answer_index(state, reply)
        answer = _titles(dataset, np.array([reply]))[0] if isinstance(reply, int) else ANSWER_WORDS[reply]
        print(f"  Q{len(state.answers)}: {' / '.join(_titles(dataset, np.array(shown)))}")
        print(f"       -> {answer}")
    mix = ", ".join(f"{name} {share:.0%}" for name, share in onboarder.persona_mix(state))
    print(f"Persona mix after {questions} questions: {mix}")
    recommended = onboarder.recommend(state, 10)
    hits = np.isin(dataset.item_ids.to_index(recommended["item_id"].to_list()), targets)
    print(f"Top 10 ({int(hits.sum())} among the user's {len(targets)} held-out movies, marked *):")
    for row, hit in zip(recommended.iter_rows(named=True), hits):
        print(f"  {row['rank']:2d}. {row['title']}{' *' if hit else ''}  [{row['persona_label']}]")
