"""`recsys-pref demo`: the main job end to end on the bundled ml-latest-small.

Fits every model on a strong-generalization split (held-out users folded in from 80% of their
positives), evaluates on the other 20% and prints the table; then shows one held-out user as
the persona model sees them: each persona with its top items and the genres that label it,
and the user's recommendations with the persona each one satisfies, without and with the
echo-chamber safeguards; then onboards a second held-out user by 10 questions. Models use their
documented default configurations (`recsys-pref bench accuracy` does the tuned comparison).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import polars as pl
from tqdm.auto import tqdm

from recsys_pref.onboarding.oracles import ProfileOracle, known_ratings
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


def run_demo(data_dir: Path | None = None, quick: bool = False, seed: int = 0) -> list[dict]:
    """Fit, evaluate and print; returns the table rows. `quick` trains the persona model for
    a few epochs only (for tests)."""
    dataset = load_dataset(DEMO_DATASET, data_dir=data_dir)
    print(dataset.summary())
    split = make_split(dataset, SplitConfig(seed=seed))
    print(f"strong generalization, seed {seed}: {len(split.test)} test users, {int(split.catalog.sum())} items ranked")
    popularity = np.asarray(split.train.sum(axis=0)).ravel()
    rows, persona = [], None
    for name in tqdm(DEMO_MODELS, desc="fitting models"):
        params = {"progress": False} | ({"max_epochs": 3} if quick else {}) if name == "persona" else {}
        model = build_model(name, params, seed)
        started = time.perf_counter()
        model.fit(split.train)
        fit_s = time.perf_counter() - started
        result = evaluate(model, split.test, catalog=split.catalog, item_popularity=popularity)
        rows.append({"model": name} | result.metrics | {"fit_s": fit_s})
        if isinstance(model, PersonaRecommender):
            persona = model
    print()
    print(markdown_table(rows, TABLE_COLUMNS))
    show_user(PersonaPipeline.from_model(persona, dataset, split.train), dataset, split)
    show_onboarding(persona, dataset, split)
    return rows


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
    print(f"User {user_id}: {history_row.nnz} liked movies folded in, {model.config.n_personas} personas "
          f"({model.state_bytes} bytes of state)")
    print("Each persona's label and what it predicts (its own top movies, not the user's history):")
    for row in pipeline.personas(user_id, history=history).iter_rows(named=True):
        print(f"  persona {row['persona']} — {row['label']}: " + "; ".join(row["top_items"][:4]))
    plain = pipeline.recommend([user_id], 10, history=history)
    print("Recommendations (persona satisfied, attention weight; because you liked):")
    for row in plain.iter_rows(named=True):
        liked = "; ".join(_title_of(dataset, item)[:30] for item in row["because_you_liked"][:2])
        print(f"  {row['rank']:2d}. {_title_of(dataset, row['item_id'])}  [persona {row['persona']} "
              f"{row['persona_label']}, {row['persona_weight']:.0%}]" + (f"  because you liked {liked}" if liked else ""))
    guarded = pipeline.recommend([user_id], 10, history=history, safeguards=load_safeguards("safeguards"))
    print("Same user with echo-chamber safeguards (`--safeguards safeguards`): without | with")
    for without, with_ in zip(plain.iter_rows(named=True), guarded.iter_rows(named=True)):
        mark = " (exploration)" if with_["exploration"] else ""
        print(f"  {without['rank']:2d}. {_title_of(dataset, without['item_id'])[:40]:40s} | "
              f"{_title_of(dataset, with_['item_id'])[:40]}{mark}")


def show_onboarding(model: PersonaRecommender, dataset: InteractionDataset, split: Split, position: int = 1,
                    questions: int = 10) -> None:
    """Onboard one held-out user by `questions` adaptive "which of these do you like most, or
    none?" questions, answered from their own ratings outside their held-out targets (the
    onboarding bench's profile oracle; targets are never asked about), then print their persona
    mix and top 10, marking the held-out targets among them."""
    onboarder = build_onboarder(model, split.train, dataset.item_ids, OnboardingConfig(max_questions=questions),
                                dataset.items)
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
        answer = _titles(dataset, np.array([reply]))[0] if isinstance(reply, int) else reply
        print(f"  Q{len(state.answers)}: {' / '.join(title[:28] for title in _titles(dataset, np.array(shown)))}"
              f"  -> {answer}")
    mix = ", ".join(f"{name} {share:.0%}" for name, share in onboarder.persona_mix(state))
    print(f"Persona mix after {questions} questions: {mix}")
    recommended = onboarder.recommend(state, 10)
    hits = np.isin(dataset.item_ids.to_index(recommended["item_id"].to_list()), targets)
    print(f"Top 10 ({int(hits.sum())} among the user's {len(targets)} held-out movies, marked *):")
    for row, hit in zip(recommended.iter_rows(named=True), hits):
        print(f"  {row['rank']:2d}. {row['title']}{' *' if hit else ''}  [{row['persona_label']}]")
