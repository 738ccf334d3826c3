"""`recsys-pref bench onboarding`: held-out users answer questions; how good are their rankings?

Protocol (per seed): the accuracy bench's strong-generalization split; the persona model
(default configuration) is fitted once on the training users, and the onboarding prior comes
from their states. Each sampled test user starts at the prior and answers questions from an
oracle; after n in `checkpoints` questions (asked, whether or not answerable) the posterior
mean ranks the catalog with the user's fold-in items excluded, exactly as the accuracy
protocol, and NDCG@10 / Recall@20 are measured on the user's held-out targets. Targets are
never shown to an oracle: they are removed from that user's question pool.

Oracles:
- `profile` knows the user's ratings outside the targets (fold-in positives and the ratings
  below the positive threshold, which are never targets). Pair: two rated items by rating
  (equal ratings: "tie"); a rated positive against an unrated item: the positive; otherwise
  "unknown". Choice: the highest-rated shown item it knows when that is a positive, "none"
  when it knows shown items but none is a positive, "unknown" when it knows none.
- `model` is a persona model fitted on the training users plus the test users' full data;
  it answers every pair by its scores, and a choice question with its best shown item, or
  "none" when that item is not among the user's n_known best-scored items (n_known = the
  median training history length: the items it "likes" are the history it predicts). A
  first run put the none level at logsumexp - log n_known (the onboarder's own none
  utility); that calls almost every item "none" (no single item has a 1/n_known share of
  the softmax), and NDCG@10 then fell with more answers (adaptive choice 0.20 -> 0.14 from
  10 to 20 questions, 40 users).

Strategies: `learned` is the interview tree (onboarding.tree) grown per seed on the training
users only (their own held-out positives are its metric's targets; test users never take part),
with the information criterion (`adaptive`) off the tree; `adaptive`, `random` and
`popular-pairs` (the static list of the most popular items) are the issue-4 strategies. Every
interview shows no item twice. `none@10` and `unknown@10` count the "none" and "don't know"
answers among each interview's first 10 questions (mean per interview).

Reference rows: `popularity`, `fold-in-full` (the persona model folding in the whole fold-in
history: the ceiling), and at every checkpoint n >= 1 `persona-known` and `ease-known` (n
random fold-in positives as the history; the ranking still excludes the whole fold-in).
Selection latency is measured on a synthetic 10k-item model (one thread). On `synthetic`,
`mix_tv` is the total-variation distance between the inferred and the planted taste mix
(evaluation.recovery). The `model` oracle has seen the test users' targets: its rows are an
upper bound, labelled `model (upper bound)`.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from recsys_pref.bench.accuracy import aggregate
from recsys_pref.bench.results import BenchResult
from recsys_pref.data.dataset import IdMap, InteractionDataset
from recsys_pref.data.splits import Split, SplitConfig, make_split
from recsys_pref.data.synthetic import make_synthetic
from recsys_pref.core.metrics import ndcg_at_k, recall_at_k
from recsys_pref.core.ranking import top_k
from recsys_pref.evaluation.recovery import mix_recovery
from recsys_pref.models.ease import EASE
from recsys_pref.models.persona import PersonaConfig, PersonaRecommender
from recsys_pref.onboarding.oracles import ModelOracle, ProfileOracle, known_ratings
from recsys_pref.onboarding.questions import STRATEGIES, QuestionConfig
from recsys_pref.onboarding.session import Onboarder, OnboardingConfig, OnboardingState, build_onboarder
from recsys_pref.onboarding.tree import (
    Interviewees, InterviewTree, TreeConfig, binary_preference, dataset_interviewees, grow_tree,
)

ORACLES: tuple[str, ...] = ("profile", "model")
ORACLE_NAMES = {"profile": "profile", "model": "model (upper bound)"}
LEARNED = "learned"
STRATEGY_NAMES = {LEARNED: "learned-tree", "adaptive": "adaptive", "random": "random", "popular": "popular-pairs"}
COLUMNS = ["strategy", "question_type", "oracle", "questions", "ndcg@10", "recall@20", "answered", "none@10",
           "unknown@10", "select_ms"]
OPTIONAL_COLUMNS = ["tree_s", "tree_nodes", "tree_depth", "mix_tv", "mix_tv_uniform", "selection_ms",
                    "selection_ms_p95", "update_ms"]


@dataclass(frozen=True)
class OnboardingBenchConfig:
    """seeds: one split and model each; max_users: test users sampled per seed; checkpoints:
    question counts measured; strategies (`learned` and STRATEGIES) / question_types / oracles:
    the grid run (`learned` asks choice questions only); rank: the posterior's subspace (None:
    the whole state); pool_size / choice_size: see QuestionConfig; tree: how the interview tree
    is grown; max_epochs: cap on the persona model's epochs (None: the default config's);
    latency_items: catalog of the latency model."""

    seeds: tuple[int, ...] = (0,)
    max_users: int = 40
    checkpoints: tuple[int, ...] = (0, 1, 2, 3, 5, 10, 15, 20)
    strategies: tuple[str, ...] = (LEARNED, *STRATEGIES)
    question_types: tuple[str, ...] = ("choice",)
    oracles: tuple[str, ...] = ("profile",)
    rank: int | None = None
    pool_size: int = 200
    choice_size: int = 4
    tree: TreeConfig = TreeConfig()
    max_epochs: int | None = None
    latency_items: int = 10_000

    @classmethod
    def quick(cls) -> "OnboardingBenchConfig":
        """The reduced run used by tests."""
        return cls(max_users=8, checkpoints=(0, 1, 3), max_epochs=3, latency_items=1000, pool_size=40,
                   oracles=ORACLES, question_types=("choice", "pair"),
                   tree=TreeConfig(max_depth=3, min_users=10, pool_size=30))


def _persona_config(config: OnboardingBenchConfig, seed: int) -> PersonaConfig:
    overrides: dict[str, Any] = {"seed": seed, "progress": False}
    if config.max_epochs is not None:
        overrides["max_epochs"] = config.max_epochs
    return PersonaConfig.preset("persona", **overrides)


def _model_oracles(split: Split, users: np.ndarray, config: PersonaConfig, n_known: float) -> list[ModelOracle]:
    """A persona model fitted on training users plus the test users' full data, as oracles."""
    full = (split.test.fold_in + split.test.targets).tocsr()
    placement = sp.csr_matrix(
        (np.ones(len(split.test)), (split.test.users, np.arange(len(split.test)))),
        shape=(split.train.shape[0], len(split.test)),
    )
    oracle_model = PersonaRecommender(config).fit((split.train + placement @ full).tocsr())
    scores = oracle_model.score(full[users])
    scores[:, ~split.catalog] = -np.inf
    rank = min(max(int(round(n_known)), 1), int(split.catalog.sum()))
    levels = -np.partition(-scores, rank - 1, axis=1)[:, rank - 1]  # each user's n_known-th best score
    return [ModelOracle(row, float(level)) for row, level in zip(scores, levels)]


def _ranking_metrics(scores: np.ndarray, split: Split, users: np.ndarray) -> dict[str, float]:
    """NDCG@10 and Recall@20 of `scores` (n, n_items) for test users at positions `users`,
    fold-in items and items outside the catalog excluded."""
    ids, _ = top_k(scores, 20, exclude=split.test.fold_in[users], banned_items=~split.catalog)
    targets = split.test.targets[users]
    return {"ndcg@10": float(np.nanmean(ndcg_at_k(ids, targets, 10))),
            "recall@20": float(np.nanmean(recall_at_k(ids, targets, 20, split.recall_denominator)))}


def _sample_history(rows: sp.csr_matrix, size: int, rng: np.random.Generator) -> sp.csr_matrix:
    """Per row, `size` random stored entries (all of them when fewer)."""
    out = sp.lil_matrix(rows.shape, dtype=np.float32)
    for row in range(rows.shape[0]):
        items = rows[row].indices
        out[row, rng.choice(items, size=min(size, len(items)), replace=False)] = 1.0
    return out.tocsr()


def reference_rows(
    model: PersonaRecommender, split: Split, users: np.ndarray, config: OnboardingBenchConfig, seed: int
) -> list[dict[str, Any]]:
    """Rows of popularity and the full fold-in (questions None), and of n known favourites
    (persona and EASE) at every checkpoint n >= 1 (each n its own random draw)."""
    fold_in = split.test.fold_in[users]
    popularity = np.asarray(split.train.sum(axis=0), dtype=np.float32).ravel()
    ease = EASE(l2=200.0).fit(split.train)
    rows = [{"strategy": "popularity", "questions": None}
            | _ranking_metrics(np.repeat(popularity[None], len(users), axis=0), split, users),
            {"strategy": "fold-in-full", "questions": None} | _ranking_metrics(model.score(fold_in), split, users)]
    for n in (n for n in config.checkpoints if n > 0):
        known = _sample_history(fold_in, n, np.random.default_rng([seed, n]))
        rows.append({"strategy": "persona-known", "questions": n} | _ranking_metrics(model.score(known), split, users))
        rows.append({"strategy": "ease-known", "questions": n} | _ranking_metrics(ease.score(known), split, users))
    return rows


def learn_tree(model: PersonaRecommender, dataset: InteractionDataset, split: Split, config: TreeConfig
               ) -> tuple[InterviewTree, float]:
    """The interview tree of one seed, grown on its training users only, and the seconds taken."""
    started = time.perf_counter()
    people = dataset_interviewees(dataset, split.train, config)
    tree = grow_tree(model, people, split.catalog & (np.asarray(split.train.sum(axis=0)).ravel() > 0), config,
                     progress=False)
    return tree, time.perf_counter() - started


def run_sessions(
    onboarder: Onboarder, oracles: list, pools: list[np.ndarray], checkpoints: tuple[int, ...]
) -> tuple[dict[int, list[OnboardingState]], float, float]:
    """Onboard each user with their oracle (their own pool); returns the states at every
    checkpoint (copies) and the answer statistics: the share of questions answered
    informatively, the mean "none" and "don't know" answers in the first 10 questions, the mean
    selection ms."""
    snapshots: dict[int, list[OnboardingState]] = {n: [] for n in checkpoints}
    answered = asked = 0
    nones = unknowns = 0
    select_s = 0.0
    question_type = onboarder.config.questions.question_type
    for user, (oracle, pool) in enumerate(zip(oracles, pools)):
        onboarder.pool = pool
        state = onboarder.start(seed=user)
        for n in range(max(checkpoints) + 1):
            if n in snapshots:
                snapshots[n].append(OnboardingState.from_json(state.to_json()))
            if n == max(checkpoints):
                break
            started = time.perf_counter()
            items = onboarder.next_question_indices(state)
            select_s += time.perf_counter() - started
            if onboarder.is_kind_question(state):
                assert onboarder.tree is not None
                reply = oracle.kind(items, onboarder.tree.kind_items)
            else:
                reply = oracle(items, question_type)
            onboarder.answer_index(state, reply)
            asked += 1
            answered += reply != "unknown"
            nones += n < 10 and reply in ("none", "tie")
            unknowns += n < 10 and reply == "unknown"
    users = max(len(oracles), 1)
    return snapshots, {"answered": answered / max(asked, 1), "none@10": nones / users, "unknown@10": unknowns / users,
                       "select_ms": 1000 * select_s / max(asked, 1)}


def _mix_error(onboarder: Onboarder, states: list[OnboardingState], dataset: InteractionDataset,
               dataset_users: np.ndarray) -> dict[str, float]:
    """Total variation between inferred and planted mixes (synthetic only)."""
    _, attention = onboarder.scores_and_attention(states)  # (n, M, n_items)
    rewards = np.stack([onboarder.persona_rewards(state) for state in states])  # (n, M, n_items)
    truth = replace(dataset.ground_truth, user_mix=dataset.ground_truth.user_mix[dataset_users])
    distance, uniform = mix_recovery(rewards, attention, truth)
    return {"mix_tv": distance, "mix_tv_uniform": uniform}


def benchmark_seed(dataset: InteractionDataset, config: OnboardingBenchConfig, seed: int, bar: tqdm) -> list[dict[str, Any]]:
    """Every (strategy, question type, oracle, checkpoint) row and the references for one seed."""
    split = make_split(dataset, SplitConfig(protocol="strong", seed=seed))
    rng = np.random.default_rng(seed)
    users = np.sort(rng.choice(len(split.test), size=min(config.max_users, len(split.test)), replace=False))
    persona_config = _persona_config(config, seed)
    bar.set_postfix_str(f"seed {seed}: fitting the persona model")
    model = PersonaRecommender(persona_config).fit(split.train)
    rows = reference_rows(model, split, users, config, seed)
    tree, tree_s = (None, 0.0)
    if LEARNED in config.strategies:
        bar.set_postfix_str(f"seed {seed}: growing the interview tree")
        tree, tree_s = learn_tree(model, dataset, split, replace(config.tree, seed=seed))
    threshold = dataset.positive_threshold if dataset.positive_threshold is not None else -np.inf
    oracles: dict[str, list] = {}
    if "profile" in config.oracles:
        oracles["profile"] = [ProfileOracle(ratings, threshold) for ratings in known_ratings(dataset, split, users)]
    pools_base = None
    for question_type in config.question_types:
        for strategy in config.strategies:
            if strategy == LEARNED and question_type != "choice":
                continue
            questions = QuestionConfig(question_type=question_type, strategy="adaptive" if strategy == LEARNED else strategy,
                                       pool_size=config.pool_size, choice_size=config.choice_size)
            onboarder = build_onboarder(model, split.train, _identity_ids(split), OnboardingConfig(
                questions, max_questions=max(config.checkpoints)), rank=config.rank,
                tree=tree if strategy == LEARNED else None)
            if pools_base is None:
                pools_base = onboarder.pool
                if "model" in config.oracles:
                    bar.set_postfix_str(f"seed {seed}: fitting the model oracle")
                    oracles["model"] = _model_oracles(split, users, persona_config, onboarder.n_known)
            pools = [pools_base[~np.isin(pools_base, split.test.targets[u].indices)] for u in users]
            for oracle_name in config.oracles:
                bar.set_postfix_str(f"seed {seed}: {strategy} {question_type} {oracle_name}")
                snapshots, statistics = run_sessions(onboarder, oracles[oracle_name], pools, config.checkpoints)
                if strategy == LEARNED and tree is not None:
                    statistics |= {"tree_s": tree_s, "tree_nodes": len(tree.nodes),
                                   "tree_depth": int(tree.depths().max()) + 1}
                for n, states in snapshots.items():
                    scores = onboarder.ranking_scores(states)
                    row = {"strategy": STRATEGY_NAMES[strategy], "question_type": question_type,
                           "oracle": ORACLE_NAMES[oracle_name], "questions": n} | statistics
                    row |= _ranking_metrics(scores, split, users)
                    if dataset.ground_truth is not None:
                        row |= _mix_error(onboarder, states, dataset, split.test.users[users])
                    rows.append(row)
                bar.update()
    return rows


def _identity_ids(split: Split) -> IdMap:
    """Item ids equal to dense indices (the bench works in indices throughout)."""
    return IdMap(np.arange(split.train.shape[1]), "item")


def selection_latency(config: OnboardingBenchConfig, n_questions: int = 10) -> list[dict[str, Any]]:
    """Selection and update milliseconds per question on a synthetic `latency_items` catalog,
    adaptive strategy, answers drawn at random (run inside `run_onboarding`, one torch thread)."""
    dataset = make_synthetic(n_users=1000, n_items=config.latency_items, seed=0)
    train = dataset.to_csr()
    model = PersonaRecommender(PersonaConfig.preset("persona", max_epochs=1, validation_share=0.0, progress=False))
    model.fit(train)
    rows = []
    for question_type in config.question_types:
        questions = QuestionConfig(question_type=question_type, pool_size=config.pool_size, choice_size=config.choice_size)
        onboarder = build_onboarder(model, train, dataset.item_ids, OnboardingConfig(questions, max_questions=n_questions),
                                    rank=config.rank)
        rng = np.random.default_rng(0)
        state = onboarder.start()
        select, update = [], []
        for _ in range(n_questions):
            started = time.perf_counter()
            items = onboarder.next_question_indices(state)
            select.append(time.perf_counter() - started)
            started = time.perf_counter()
            onboarder.answer_index(state, int(rng.choice(items)))
            update.append(time.perf_counter() - started)
        rows.append({"strategy": "latency", "question_type": question_type, "oracle": "–",
                     "questions": n_questions, "catalog_items": config.latency_items,
                     "pool_items": len(onboarder.pool), "selection_ms": 1000 * float(np.mean(select)),
                     "selection_ms_p95": 1000 * float(np.quantile(select, 0.95)),
                     "update_ms": 1000 * float(np.mean(update))})
    return rows + ([learned_latency(config, model, dataset, n_questions)] if LEARNED in config.strategies else [])


def learned_latency(config: OnboardingBenchConfig, model: PersonaRecommender, dataset: InteractionDataset,
                    n_questions: int) -> dict[str, Any]:
    """Selection milliseconds of the learned policy (tree, then the information criterion) on
    the latency model, answers drawn at random, and the tree's growing seconds."""
    started = time.perf_counter()
    train = dataset.to_csr()
    preference, threshold = binary_preference(train, train)
    people = Interviewees.from_training(train, preference, threshold, config.tree.holdout_share,
                                        np.random.default_rng(0))
    tree = grow_tree(model, people, np.asarray(train.sum(axis=0)).ravel() > 0, config.tree, progress=False)
    tree_s = time.perf_counter() - started
    questions = QuestionConfig(pool_size=config.pool_size, choice_size=config.choice_size)
    onboarder = build_onboarder(model, train, dataset.item_ids, OnboardingConfig(questions, max_questions=n_questions),
                                rank=config.rank, tree=tree)
    rng = np.random.default_rng(0)
    state = onboarder.start()
    select = []
    for _ in range(n_questions):
        started = time.perf_counter()
        items = onboarder.next_question_indices(state)
        select.append(time.perf_counter() - started)
        onboarder.answer_index(state, int(rng.choice(items)))
    return {"strategy": "latency", "question_type": "choice (learned-tree)", "oracle": "–", "questions": n_questions,
            "catalog_items": config.latency_items, "pool_items": len(onboarder.pool),
            "selection_ms": 1000 * float(np.mean(select)), "selection_ms_p95": 1000 * float(np.quantile(select, 0.95)),
            "tree_s": tree_s, "tree_nodes": len(tree.nodes)}


def run_onboarding(dataset: InteractionDataset, config: OnboardingBenchConfig, progress: bool = True) -> BenchResult:
    """The onboarding suite on `dataset` (see module docstring)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # onboarding's tensors are small: more intra-op threads only add synchronisation
    try:
        return _run_onboarding(dataset, config, progress)
    finally:
        torch.set_num_threads(threads)


def _run_onboarding(dataset: InteractionDataset, config: OnboardingBenchConfig, progress: bool) -> BenchResult:
    runs = sum(strategy != LEARNED or question_type == "choice" for strategy in config.strategies
               for question_type in config.question_types) * len(config.oracles)
    per_seed: dict[tuple, list[dict[str, Any]]] = {}
    with tqdm(total=len(config.seeds) * runs, desc=f"onboarding on {dataset.name}", disable=not progress) as bar:
        for seed in config.seeds:
            for row in benchmark_seed(dataset, config, seed, bar):
                key = (row["strategy"], row.get("question_type"), row.get("oracle"), row["questions"])
                per_seed.setdefault(key, []).append(row)
    rows = []
    for (strategy, question_type, oracle, questions), results in per_seed.items():
        numeric = [{key: value for key, value in result.items() if key != "questions"} for result in results]
        row = aggregate(strategy, numeric)
        row.pop("model")
        rows.append({"strategy": strategy, "question_type": question_type or "–", "oracle": oracle or "–",
                     "questions": "–" if questions is None else questions} | row)
    rows += selection_latency(config)
    return BenchResult(
        suite="onboarding",
        dataset=dataset.name,
        protocol="strong",
        config=asdict(config) | {"persona": asdict(_persona_config(config, config.seeds[0])),
                                 "dataset_summary": dataset.summary()},
        rows=rows,
        columns=COLUMNS + [column for column in OPTIONAL_COLUMNS if any(column in row for row in rows)],
    )
