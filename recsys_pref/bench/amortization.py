"""`recsys-pref bench amortization`: what personalizing N users costs, and how well (issue 14).

The library's question: is the shared side plus a nearly free user cheaper than a model per
user, at the same accuracy? On one strong-generalization split (held-out users: 80% of each
one's positives are what the method sees, 20% the targets):

- shared side: `PersonaRecommender.fit` on the training users, timed once (seconds);
- per user, fold-in: `fold_in` of the test users' histories, repeated to FOLD_IN_ROWS rows (the
  batch throughput a user base gets), seconds / rows;
- per user, ten questions: the library's onboarding, the learned interview tree (issue 12,
  onboarding.tree), grown on the training users as bench onboarding grows it (`learn_tree`),
  then an interview of 10 choice questions per sampled test user (the tree's questions, then
  the information criterion off the tree; answers by each user's own known ratings, bench
  onboarding's profile oracle; the pool excludes the user's targets). Per user: wall seconds
  of the whole session, i.e. ten selections, the answers' updates, and the inference (the
  ranking's fold-in), after one untimed warm-up session; `select_ms` is one selection alone.
  The tree's growing seconds are charged to THIS row's shared side (fit + tree); the fold-in
  row's shared side is the fit alone. (Until issue 14's rerun this row ran onboarding.session's
  adaptive information criterion without a tree: 11.2 s per session on ml-100k under load, too
  slow to keep beside the tree on the shared machine, so the tree row replaced it.)
- the alternative, a model per user: L2-regularised logistic regression over the shared item
  embeddings (+ a bias), the user's history as positives and every other catalog item as a
  negative (classes balanced), fitted by L-BFGS to convergence (gradient norm < 1e-6, at most
  MAX_ITERATIONS); its L2 strength picked from LR_GRID on validation users (the budget of a
  4-point grid; the persona model runs its defaults). Timed per user on a sample and
  extrapolated linearly: it costs N times one user, whatever N. Its features are the shared
  side's embeddings, whose cost is not charged to it (in its favour).

Cost of N users: shared + N * per-user (ours), N * per-user (per-user models). Accuracy:
NDCG@10 on the test users' targets, fold-in items excluded, each method on the users it ran on.
A row per method: the per-user seconds, NDCG@10, and the total and per-user cost at each N in
USER_COUNTS; `write_plot` draws total cost against N on log-log axes.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize

from recsys_pref.bench.results import BenchResult
from recsys_pref.core.metrics import ndcg_at_k
from recsys_pref.core.ranking import top_k
from recsys_pref.data.dataset import IdMap, InteractionDataset
from recsys_pref.data.splits import HeldOut, Split, SplitConfig, make_split
from recsys_pref.models.persona import PersonaConfig, PersonaRecommender
from recsys_pref.onboarding.tree import TreeConfig

USER_COUNTS = (10**3, 10**4, 10**5, 10**6, 10**7)
LR_GRID = (0.01, 0.1, 1.0, 10.0)  # the per-user model's L2 strengths tried on validation users
MAX_ITERATIONS = 1000
FOLD_IN_ROWS = 20_000  # fold-in is timed on the test histories repeated to this many rows (batch throughput)
PLOT_FILE = "amortization.png"


@dataclass(frozen=True)
class AmortizationConfig:
    """model_users: sampled test users for the per-user models (and validation users for their
    grid; ndcg@10_same_users is fold-in's NDCG@10 on that same sample); onboarding_users:
    sampled test users onboarded; questions: per session; tree: how the interview tree is grown
    (its seed is replaced by `seed`); seed: the split's, the tree's and the samples'."""

    model_users: int = 200
    onboarding_users: int = 100
    questions: int = 10
    tree: TreeConfig = field(default_factory=TreeConfig)
    seed: int = 0

    @classmethod
    def quick(cls) -> "AmortizationConfig":
        return cls(model_users=10, onboarding_users=5, questions=3,
                   tree=TreeConfig(max_depth=3, min_users=10, pool_size=30))


def ndcg10(scores: np.ndarray, held_out: HeldOut, rows: np.ndarray, catalog: np.ndarray) -> float:
    """Mean NDCG@10 of `scores` (n, n_items) for held-out users at positions `rows`, their
    fold-in items and items outside the catalog excluded."""
    ids, _ = top_k(scores, 10, exclude=held_out.fold_in[rows], banned_items=~catalog)
    return float(np.nanmean(ndcg_at_k(ids, held_out.targets[rows], 10)))


def _logistic_loss(weights: np.ndarray, features: np.ndarray, labels: np.ndarray, sample_weight: np.ndarray,
                   l2: float) -> tuple[float, np.ndarray]:
    """Weighted mean logistic loss + l2/2 |w|^2 (bias, the last weight, not penalised), and its gradient."""
    margin = features @ weights  # (n_items,)
    loss = np.logaddexp(0.0, -margin * (2 * labels - 1))
    probability = 1.0 / (1.0 + np.exp(-margin))
    penalty = weights.copy()
    penalty[-1] = 0.0
    total = float(sample_weight @ loss) / sample_weight.sum() + 0.5 * l2 * float(penalty @ penalty)
    gradient = features.T @ (sample_weight * (probability - labels)) / sample_weight.sum() + l2 * penalty
    return total, gradient


def fit_user_model(features: np.ndarray, history: np.ndarray, l2: float) -> np.ndarray:
    """One user's logistic reward over the catalog `features` (n_items, d + 1): `history` item
    positions positive, the rest negative, classes balanced; the weights (d + 1,) at convergence."""
    labels = np.zeros(features.shape[0])
    labels[history] = 1.0
    sample_weight = np.where(labels > 0, (len(labels) - len(history)) / max(len(history), 1), 1.0)
    result = minimize(_logistic_loss, np.zeros(features.shape[1]), args=(features, labels, sample_weight, l2),
                      jac=True, method="L-BFGS-B", options={"maxiter": MAX_ITERATIONS, "gtol": 1e-6})
    return result.x


def per_user_model_scores(features: np.ndarray, catalog: np.ndarray, held_out: HeldOut, rows: np.ndarray,
                          l2: float) -> tuple[np.ndarray, float]:
    """Scores (n, n_items) of per-user models for the held-out users at `rows`, and the mean
    seconds to fit one (training on catalog items only)."""
    columns = np.flatnonzero(catalog)
    position = np.full(len(catalog), -1)
    position[columns] = np.arange(len(columns))
    scores = np.zeros((len(rows), len(catalog)), np.float32)
    started = time.perf_counter()
    for out, row in enumerate(rows):
        history = position[held_out.fold_in[row].indices]
        weights = fit_user_model(features[columns], history[history >= 0], l2)
        scores[out] = features @ weights
    return scores, (time.perf_counter() - started) / max(len(rows), 1)


def onboarding_sessions(model: PersonaRecommender, dataset: InteractionDataset, split: Split, rows: np.ndarray,
                        config: AmortizationConfig) -> dict[str, Any]:
    """The learned interview for the test users at `rows`: grows the tree on the training users
    (bench onboarding's `learn_tree`), then `config.questions` answered choice questions per user
    (bench onboarding's sessions and profile oracle, read-only). Returns the ranking `scores`
    (n, n_items), `tree_s` (growing seconds), `per_user_s` (wall seconds per session: selections,
    answer updates and the ranking's inference), `select_ms` (one selection) and the tree's size."""
    from recsys_pref.bench.onboarding import learn_tree, run_sessions
    from recsys_pref.onboarding.oracles import ProfileOracle, known_ratings
    from recsys_pref.onboarding.questions import QuestionConfig
    from recsys_pref.onboarding.session import OnboardingConfig, build_onboarder

    tree, tree_s = learn_tree(model, dataset, split, replace(config.tree, seed=config.seed))
    onboarder = build_onboarder(model, split.train, IdMap(np.arange(split.train.shape[1]), "item"),
                                OnboardingConfig(QuestionConfig(question_type="choice"),
                                                 max_questions=config.questions), tree=tree)
    threshold = dataset.positive_threshold if dataset.positive_threshold is not None else -np.inf
    oracles = [ProfileOracle(ratings, threshold) for ratings in known_ratings(dataset, split, rows)]
    pools = [onboarder.pool[~np.isin(onboarder.pool, split.test.targets[row].indices)] for row in rows]
    warm_up, _ = run_sessions(onboarder, oracles[:1], pools[:1], (config.questions,))
    onboarder.ranking_scores(warm_up[config.questions])  # first-call costs are not per user
    started = time.perf_counter()
    snapshots, statistics = run_sessions(onboarder, oracles, pools, (config.questions,))
    scores = onboarder.ranking_scores(snapshots[config.questions])  # (n, n_items)
    per_user_s = (time.perf_counter() - started) / max(len(rows), 1)
    return {"scores": scores, "tree_s": tree_s, "per_user_s": per_user_s, "select_ms": statistics["select_ms"],
            "tree_nodes": len(tree.nodes), "tree_depth": int(tree.depths().max()) + 1}


def _sample(n: int, size: int, seed: int) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).choice(n, size=min(size, n), replace=False))


def cost_columns(shared_s: float, per_user_s: float, reference_per_user_s: float) -> dict[str, float]:
    """Total seconds and seconds per user at each N of USER_COUNTS, and how many times cheaper
    per user than the per-user models (`reference_per_user_s`) each N is."""
    columns: dict[str, float] = {}
    for n in USER_COUNTS:
        total = shared_s + n * per_user_s
        exponent = int(round(np.log10(n)))
        columns[f"total_s@1e{exponent}"] = total
        columns[f"per_user_s@1e{exponent}"] = total / n
        columns[f"cheaper_x@1e{exponent}"] = reference_per_user_s / (total / n)
    return columns


def run_amortization(dataset: InteractionDataset, config: AmortizationConfig,
                     persona: PersonaConfig | None = None) -> BenchResult:
    """The amortization suite (module docstring) on `dataset`."""
    persona = persona or PersonaConfig(progress=False, seed=config.seed)
    load_before = os.getloadavg()[0]
    split = make_split(dataset, SplitConfig(protocol="strong", seed=config.seed))
    started = time.perf_counter()
    model = PersonaRecommender(persona).fit(split.train)
    shared_s = time.perf_counter() - started
    test = split.test
    every = np.arange(len(test))
    states = model.fold_in(test.fold_in)
    repeated = sp.vstack([test.fold_in] * -(-FOLD_IN_ROWS // len(test))).tocsr()
    started = time.perf_counter()
    model.fold_in(repeated)
    fold_in_s = (time.perf_counter() - started) / repeated.shape[0]
    fold_in_scores = model.scorer.scores(states)  # (n_test, n_items)

    shared = model.shared
    features = np.hstack([shared.item_embeddings, np.ones((shared.n_items, 1), np.float32)]).astype(np.float64)
    validation = _sample(len(split.val), config.model_users, config.seed)
    tuned = {l2: ndcg10(per_user_model_scores(features, split.catalog, split.val, validation, l2)[0], split.val,
                        validation, split.catalog) for l2 in LR_GRID}
    l2 = max(tuned, key=lambda value: tuned[value])
    sampled = _sample(len(test), config.model_users, config.seed + 1)
    model_scores, model_s = per_user_model_scores(features, split.catalog, test, sampled, l2)
    onboarded = _sample(len(test), config.onboarding_users, config.seed + 2)
    interview = onboarding_sessions(model, dataset, split, onboarded, config)
    tree_shared_s = shared_s + interview["tree_s"]

    rows = [
        {"method": "persona: shared side + fold-in", "users_evaluated": len(test), "shared_s": shared_s,
         "per_user_s": fold_in_s, "ndcg@10": ndcg10(fold_in_scores, test, every, split.catalog),
         "ndcg@10_same_users": ndcg10(fold_in_scores[sampled], test, sampled, split.catalog)}
        | cost_columns(shared_s, fold_in_s, model_s),
        {"method": f"persona: shared side + interview tree + {config.questions} questions",
         "users_evaluated": len(onboarded), "shared_s": tree_shared_s, "per_user_s": interview["per_user_s"],
         "ndcg@10": ndcg10(interview["scores"], test, onboarded, split.catalog),
         "tree_s": interview["tree_s"], "select_ms": interview["select_ms"],
         "tree_nodes": interview["tree_nodes"], "tree_depth": interview["tree_depth"]}
        | cost_columns(tree_shared_s, interview["per_user_s"], model_s),
        {"method": f"a logistic reward model per user (L2 {l2:g}, tuned on {len(validation)} validation users)",
         "users_evaluated": len(sampled), "shared_s": 0.0, "per_user_s": model_s,
         "ndcg@10": ndcg10(model_scores, test, sampled, split.catalog),
         "ndcg@10_same_users": ndcg10(model_scores, test, sampled, split.catalog)}
        | cost_columns(0.0, model_s, model_s),
    ]
    columns = ["method", "users_evaluated", "ndcg@10", "ndcg@10_same_users", "shared_s", "tree_s", "per_user_s",
               "select_ms"]
    columns += [f"per_user_s@1e{int(round(np.log10(n)))}" for n in USER_COUNTS]
    columns += ["cheaper_x@1e6"]
    return BenchResult(suite="amortization", dataset=dataset.name, protocol="strong generalization (held-out users)",
                       config=asdict(config) | {"persona": asdict(persona), "lr_grid": list(LR_GRID),
                                                "lr_validation_ndcg@10": {str(k): v for k, v in tuned.items()},
                                                "user_counts": list(USER_COUNTS), "split": asdict(SplitConfig(seed=config.seed)),
                                                "load_average_1min": [load_before, os.getloadavg()[0]]},
                       rows=rows, columns=columns)


def write_plot(result: BenchResult, out_dir: Path) -> Path:
    """Total cost (seconds) against users N on log-log axes, a line per method: OUT/amortization.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for row in result.rows:
        totals = [row[f"total_s@1e{int(round(np.log10(n)))}"] for n in USER_COUNTS]
        axes.loglog(USER_COUNTS, totals, marker="o", label=f"{row['method']} (NDCG@10 {row['ndcg@10']:.3f})")
    axes.set_xlabel("users personalized, N")
    axes.set_ylabel("total wall seconds (2 CPU cores)")
    axes.set_title(f"Cost of personalizing N users ({result.dataset})")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7)
    figure.tight_layout()
    path = Path(out_dir) / PLOT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
