"""`recsys-pref bench explanations`: are the explanations faithful to the score?

Faithfulness by deletion (DESIGN.md, "Explanations and summaries"). Each model is fitted on
a split's training users with its default configuration; the held-out test users are folded
in from their histories and get a top-k over the catalog (their history excluded). For each
recommended item:
- M > 1: its explaining persona (largest attention) is removed, i.e. its attention forced to
  zero for every item and the others renormalised (a persona weight of 0 in the scorer's ControlWeights), the
  user's top-k is recomputed, and we record whether the item left it; the same for another of
  the user's personas chosen uniformly at random.
- M = 1 (pref-linear): the strongest base instead, the base k with the largest contribution
  c_uk r_k(i) to the item's reward, removed by zeroing c_uk; against a random other base.

Rows (one per model, mean ± std over seeds): faithfulness_explaining and faithfulness_random
(share of recommendations that left the top-k), mean_attention_top (mean attention of the
explaining persona; 1 for M = 1), faithfulness_bound (M > 1: share of recommendations that
some persona's removal moves out, the best any choice of explaining persona could reach: the
rest are items every persona alone would still recommend) and the test users' ndcg@100, so
that a configuration's faithfulness is seen beside its accuracy. Besides the presets, VARIANTS
names persona configurations measured for their faithfulness (lower attention temperatures).
On `synthetic`, label precision against the planted tags:
label_precision = share of test users' personas whose label's first tag is one of the user's
planted tastes (label_precision_chance: the same for a tag drawn at random), and
item_label_precision = share of recommendations whose explaining persona's label's first tag
is the item's own planted tag.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from recsys_pref.bench.accuracy import aggregate
from recsys_pref.bench.results import BenchResult
from recsys_pref.data.dataset import InteractionDataset
from recsys_pref.data.splits import HeldOut, Split, SplitConfig, make_split
from recsys_pref.data.synthetic import SyntheticTruth
from recsys_pref.evaluation.evaluate import evaluate
from recsys_pref.core.ranking import top_k
from recsys_pref.evaluation.tuning import build_model
from recsys_pref.explain.explainer import Explainer
from recsys_pref.explain.labels import NO_LABEL
from recsys_pref.models.persona.scorer import ControlWeights
from recsys_pref.models.persona import PRESETS, PersonaRecommender, PersonaState

TABLE_COLUMNS = ["model", "removed", "faithfulness_explaining", "faithfulness_random", "faithfulness_bound",
                 "mean_attention_top", "ndcg@100", "recommendations"]
#: name -> (preset, hyperparameters): configurations measured beside the presets' defaults
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "persona-tau0.3": ("persona", {"temperature": 0.3}),
    "persona-tau0.1": ("persona", {"temperature": 0.1}),
}
SYNTHETIC_COLUMNS = ["label_precision", "label_precision_chance", "item_label_precision"]


@dataclass(frozen=True)
class ExplanationsBenchConfig:
    """models: persona presets or VARIANTS names to measure; k: list length; seeds: one split and model seed each;
    max_users: test users measured per seed (None: all); params: overrides for every model."""

    models: tuple[str, ...] = ("persona", "persona-tau0.3", "persona-tau0.1", "pref-linear")
    k: int = 10
    seeds: tuple[int, ...] = (0, 1, 2)
    max_users: int | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def quick(cls, models: tuple[str, ...] = ("persona", "pref-linear")) -> "ExplanationsBenchConfig":
        """The reduced run used by tests: one seed, 3 epochs, 40 test users."""
        return cls(models=models, seeds=(0,), max_users=40, params={"max_epochs": 3})


def left_top_k(items: np.ndarray, scores: np.ndarray, k: int, fold_in: Any, banned: np.ndarray) -> np.ndarray:
    """(n,) whether items[u] is outside the top-k of scores[u] (n, n_items), rankings as in evaluation."""
    ids, _ = top_k(scores, k, exclude=fold_in, banned_items=banned)
    return ~(ids == items[:, None]).any(axis=1)


def persona_deletion(
    model: PersonaRecommender, state: PersonaState, ids: np.ndarray, persona: np.ndarray,
    held: HeldOut, banned: np.ndarray, rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, k) bools: did each item leave the top-k when its explaining persona / a random other
    persona / some persona was muted? Needs M >= 2."""
    n, k = ids.shape
    n_personas = state.prior_logits.shape[1]
    left = np.zeros((n_personas, n, k), bool)  # left[m, u, l]: item l of user u left with persona m muted
    for m in range(n_personas):
        weights = np.ones(n_personas)
        weights[m] = 0.0
        muted, _ = top_k(model.scorer.scores(state, control=ControlWeights(weights)), k, exclude=held.fold_in,
                         banned_items=banned)
        left[m] = ~(ids[:, :, None] == muted[:, None, :]).any(axis=2)
    other = (persona + rng.integers(1, n_personas, size=persona.shape)) % n_personas  # uniform over m != persona
    users, ranks = np.indices(ids.shape)
    return left[persona, users, ranks], left[other, users, ranks], left.any(axis=0)


def base_deletion(
    model: PersonaRecommender, state: PersonaState, ids: np.ndarray, held: HeldOut, banned: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """(n, k) bools for M = 1: did each item leave the top-k when its strongest base (largest
    c_uk r_k(i)) / a random other base was removed from the user's coefficients?"""
    n, k = ids.shape
    n_bases = state.coefficients.shape[2]
    contributions = state.coefficients[:, 0, None, :] * model.shared.rewards[ids]  # (n, k, K)
    strongest = contributions.argmax(axis=2)
    other = (strongest + rng.integers(1, n_bases, size=strongest.shape)) % n_bases
    users = np.repeat(np.arange(n), k)
    results = []
    for removed in (strongest, other):
        coefficients = state.coefficients[users].copy()  # (n * k, 1, K): one edited state per item
        coefficients[np.arange(n * k), 0, removed.ravel()] = 0.0
        edited = PersonaState(coefficients, state.prior_logits[users])
        scores = model.scorer.scores(edited)
        results.append(left_top_k(ids.ravel(), scores, k, held.fold_in[users], banned).reshape(n, k))
    return results[0], results[1]


def _first_tag(label: str) -> str:
    return label.split(" & ")[0] if label != NO_LABEL else NO_LABEL


def label_precision(
    explainer: Explainer, state: PersonaState, ids: np.ndarray, persona: np.ndarray, users: np.ndarray,
    truth: SyntheticTruth,
) -> dict[str, float]:
    """Labels against the planted tags (see the module docstring); users: dataset indices."""
    first_tags = [[_first_tag(p.label) for p in personas] for personas in explainer.describe(state)]
    planted = [{f"taste-{k}" for k in np.flatnonzero(truth.user_mix[user])} for user in users]
    persona_hits = [tag in tastes for tags, tastes in zip(first_tags, planted) for tag in tags]
    item_hits = [first_tags[u][persona[u, l]] == truth.item_tags[ids[u, l]] for u, l in zip(*np.nonzero(ids >= 0))]
    chance = np.mean([len(tastes) / truth.persona_vectors.shape[0] for tastes in planted])
    return {"label_precision": float(np.mean(persona_hits)), "label_precision_chance": float(chance),
            "item_label_precision": float(np.mean(item_hits))}


def measure(
    dataset: InteractionDataset, split: Split, name: str, config: ExplanationsBenchConfig
) -> dict[str, Any]:
    """Fit `name` on the split and measure its test users (see the module docstring)."""
    preset, params = VARIANTS.get(name, (name, {}))
    model = build_model(preset, params | config.params | {"progress": False}, split.seed)
    model.fit(split.train)
    accuracy = evaluate(model, split.test, catalog=split.catalog, recall_denominator=split.recall_denominator)
    rng = np.random.default_rng(split.seed)
    held = split.test
    if config.max_users is not None and len(held) > config.max_users:
        keep = np.sort(rng.choice(len(held), config.max_users, replace=False))
        held = HeldOut(held.users[keep], held.fold_in[keep], held.targets[keep], held.known)
    banned = ~split.catalog
    state = model.fold_in(held.fold_in)
    terms = model.scorer.terms(state)
    ids, _ = top_k(terms.scores, config.k, exclude=held.fold_in, banned_items=banned)
    if (ids < 0).any():
        raise ValueError(f"some test users have fewer than k={config.k} unseen catalog items to rank; lower k")
    users, ranks = np.indices(ids.shape)
    attention = terms.attention[users, :, ids]  # (n, k, M)
    persona = attention.argmax(axis=2)
    if state.prior_logits.shape[1] > 1:
        explaining, random, some = persona_deletion(model, state, ids, persona, held, banned, rng)
        removed, bound = "persona", {"faithfulness_bound": float(some.mean())}
    else:
        explaining, random = base_deletion(model, state, ids, held, banned, rng)
        removed, bound = "base", {}  # no bound: it would take a scoring per base per item
    row = {
        "removed": removed,
        "faithfulness_explaining": float(explaining.mean()),
        "faithfulness_random": float(random.mean()),
        "mean_attention_top": float(attention.max(axis=2).mean()),
        "ndcg@100": accuracy.metrics["ndcg@100"],
        "recommendations": float(ids.size),
    } | bound
    if dataset.ground_truth is not None:
        explainer = Explainer.for_items(model.scorer, dataset.items, split.train)
        row |= label_precision(explainer, state, ids, persona, held.users, dataset.ground_truth)
    return row


def run_explanations(dataset: InteractionDataset, config: ExplanationsBenchConfig, progress: bool = True) -> BenchResult:
    """The explanations suite on `dataset`: one row per model (see module docstring)."""
    unknown = [name for name in config.models if name not in PRESETS and name not in VARIANTS]
    if unknown:
        raise ValueError(
            f"the explanations bench measures persona models ({', '.join(PRESETS + tuple(VARIANTS))}); got {unknown}"
        )
    if config.k < 1:
        raise ValueError(f"k must be >= 1, got {config.k}")
    protocol = "fixed" if dataset.fixed_test is not None else "strong"
    splits = [make_split(dataset, SplitConfig(protocol=protocol, seed=seed)) for seed in config.seeds]
    rows = []
    with tqdm(total=len(config.models) * len(splits), desc=f"explanations on {dataset.name}", disable=not progress) as bar:
        for name in config.models:
            per_seed = []
            for split in splits:
                bar.set_postfix_str(f"{name}, seed {split.seed}")
                per_seed.append(measure(dataset, split, name, config))
                bar.update()
            rows.append(aggregate(name, per_seed) | {"removed": per_seed[0]["removed"]})
    columns = TABLE_COLUMNS + (SYNTHETIC_COLUMNS if dataset.ground_truth is not None else [])
    return BenchResult(
        suite="explanations",
        dataset=dataset.name,
        protocol=protocol,
        config=asdict(config) | {"dataset_summary": dataset.summary()},
        rows=rows,
        columns=columns,
    )
