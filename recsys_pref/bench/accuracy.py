"""`recsys-pref bench accuracy`: every model tuned with the same budget, over several seeds.

Each model is tuned once, on the validation users of the first seed's split, within the same
budget of configurations for every model. Then per seed: a fresh split (strong
generalization with new held-out users, or the dataset's fixed split with a new model seed),
the chosen configuration fitted on the training matrix, timed, and evaluated on the test
users. A row per model holds each metric's mean over seeds (key "ndcg@10") and its standard
deviation ("ndcg@10_std"). On `synthetic`, persona models also report how well they recover
the planted tastes (see evaluation.recovery).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from recsys_pref.bench.results import BenchResult
from recsys_pref.bench.scale import best_seconds
from recsys_pref.core.metrics import ndcg_at_k, recall_at_k
from recsys_pref.data.dataset import InteractionDataset
from recsys_pref.data.splits import Split, SplitConfig, make_split
from recsys_pref.data.synthetic import SyntheticTruth
from recsys_pref.evaluation.beyond_accuracy import item_category_matrix
from recsys_pref.evaluation.evaluate import evaluate
from recsys_pref.evaluation.recovery import direction_recovery, mix_recovery
from recsys_pref.evaluation.tuning import build_model, tune
from recsys_pref.models import MODELS
from recsys_pref.models.base import ModelTooLargeError
from recsys_pref.models.persona import PersonaRecommender

BASELINE_NAMES = ("popularity", "itemknn", "als", "bpr", "ease")
TABLE_COLUMNS = ["model", "ndcg@10", "ndcg@100", "recall@20", "recall@50", "coverage@10", "fit_s",
                 "recommend_users_per_s", "params"]
OPTIONAL_COLUMNS = ["state_bytes", "popularity_prior", "direction_cosine", "mix_tv", "mix_tv_uniform", "skipped"]
FIXED_SPLIT_COLUMNS = ["model", "recall@20", "ndcg@20"] + [c for c in TABLE_COLUMNS[1:] if c != "recall@20"]


@dataclass(frozen=True)
class AccuracyBenchConfig:
    """models: registry names; seeds: one split (and model seed) each; budget: configurations
    tried per model (on the first seed); tuning_metric: validation metric that picks the configuration
    (default ndcg@100, or ndcg@20 on a fixed split as in the papers that publish it);
    protocol: None picks "fixed" when the dataset ships a split, else "strong"; overrides:
    hyperparameters fixed for every model whose config has the field (the others ignore them),
    applied on top of each grid entry, e.g. {"accelerator": "gpu"}."""

    models: tuple[str, ...] = BASELINE_NAMES
    seeds: tuple[int, ...] = (0, 1, 2)
    budget: int = 8
    tuning_metric: str | None = None
    protocol: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def quick(cls, models: tuple[str, ...] = BASELINE_NAMES) -> "AccuracyBenchConfig":
        """The reduced run used by tests: one seed, two configurations per model."""
        return cls(models=models, seeds=(0,), budget=2)


def _protocol(dataset: InteractionDataset, config: AccuracyBenchConfig) -> str:
    return config.protocol or ("fixed" if dataset.fixed_test is not None else "strong")


def _item_categories(dataset: InteractionDataset) -> np.ndarray | None:
    genres = dataset.items["genres"].to_list()
    if not any(genres):
        return None
    categories, _ = item_category_matrix(genres)
    return categories


def fit_and_evaluate(dataset: InteractionDataset, split: Split, name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Fit model `name` with `params` on the split's training matrix and evaluate on its test users."""
    model = build_model(name, params, split.seed)
    started = time.perf_counter()
    model.fit(split.train)
    fit_s = time.perf_counter() - started
    popularity = np.asarray(split.train.sum(axis=0)).ravel()
    result = evaluate(
        model,
        split.test,
        catalog=split.catalog,
        recall_denominator=split.recall_denominator,
        item_popularity=popularity,
        item_categories=_item_categories(dataset),
    )
    metrics = result.metrics | {"fit_s": fit_s, "params": model.hyperparameters()}
    if isinstance(model, PersonaRecommender):
        metrics["state_bytes"] = float(model.state_bytes)
        if "popularity_prior" in model.training_summary:  # the eta chosen on the fit's validation users
            metrics["popularity_prior"] = model.training_summary["popularity_prior"]
        if dataset.ground_truth is not None:
            metrics |= planted_recovery(model, split, dataset.ground_truth)
    return metrics


def planted_recovery(model: PersonaRecommender, split: Split, truth: SyntheticTruth) -> dict[str, float]:
    """Recovery of the planted tastes and mixes, measured on the test users (folded in)."""
    state = model.fold_in(split.test.fold_in)
    terms = model.scorer.terms(state)
    attention, rewards = terms.attention, terms.rho  # (n, M, n_items) each: alpha_um(i), rho_um(i)
    test_truth = replace(truth, user_mix=truth.user_mix[split.test.users])
    distance, uniform = mix_recovery(rewards, attention, test_truth)
    return {"direction_cosine": direction_recovery(rewards, test_truth), "mix_tv": distance, "mix_tv_uniform": uniform}


def aggregate(name: str, per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation over seeds of every numeric metric."""
    row: dict[str, Any] = {"model": name}
    numeric = [key for key, value in per_seed[0].items() if isinstance(value, (int, float))]
    for key in numeric:
        values = np.array([result[key] for result in per_seed], dtype=float)
        row[key] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
        row[f"{key}_std"] = float(np.nanstd(values)) if np.isfinite(values).any() else float("nan")
    row["seeds"] = len(per_seed)
    return row


def hyperparameter_names(name: str) -> set[str]:
    """The config fields of model `name`."""
    config_class = MODELS[name].config_class
    return {item.name for item in fields(config_class)} if config_class is not None else set()


def model_grid(name: str, overrides: dict[str, Any]) -> list[dict[str, Any]]:
    """Model `name`'s grid with the overrides that its config has applied to every entry."""
    applicable = {key: value for key, value in overrides.items() if key in hyperparameter_names(name)}
    return [params | applicable for params in MODELS[name].grid] or [applicable]


def benchmark_model(
    dataset: InteractionDataset, name: str, splits: dict[int, Split], config: AccuracyBenchConfig, metric: str, bar: tqdm
) -> dict[str, Any]:
    """Tune `name` on the first split's validation users, then fit and evaluate on every split.
    A model too large for this data gets a row saying so instead of metrics."""
    tuning_split = next(iter(splits.values()))
    bar.set_postfix_str(f"tuning {name}")
    try:
        tuning = tune(name, tuning_split, model_grid(name, config.overrides), metric=metric, budget=config.budget, seed=tuning_split.seed)
    except ModelTooLargeError as error:
        bar.update(1 + len(splits))
        return {"model": name, "skipped": str(error)}
    bar.update()
    per_seed = []
    for seed, split in splits.items():
        bar.set_postfix_str(f"{name}, seed {seed}")
        per_seed.append(fit_and_evaluate(dataset, split, name, tuning.best_params))
        bar.update()
    return aggregate(name, per_seed) | {"params": tuning.best_params, "config": per_seed[0]["params"]}


SWEEP_PERSONAS = (1, 2, 3, 4)
SWEEP_BASES = (8, 16, 32, 64)
SWEEP_TEMPERATURES = (0.3, 1.0, 3.0)
SWEEP_COLUMNS = ["model", "n_personas", "n_bases", "temperature", "val_ndcg@100", "val_recall@20", "state_bytes",
                 "fit_s"]


def sweep_grid(
    personas: tuple[int, ...] = SWEEP_PERSONAS,
    bases: tuple[int, ...] = SWEEP_BASES,
    temperatures: tuple[float, ...] = SWEEP_TEMPERATURES,
) -> list[dict[str, Any]]:
    """Every (M, K, tau); with one persona the attention is 1 whatever tau is, so M = 1
    appears once per K (at tau = 1)."""
    return [
        {"n_personas": n_personas, "n_bases": n_bases, "temperature": temperature}
        for n_personas in personas
        for n_bases in bases
        for temperature in (temperatures if n_personas > 1 else (1.0,))
    ]


def run_sweep(
    dataset: InteractionDataset,
    config: AccuracyBenchConfig,
    grid: list[dict[str, Any]] | None = None,
    progress: bool = True,
) -> BenchResult:
    """The persona model at every (M, K, tau) of `grid` (default: `sweep_grid()`), fitted on
    each seed's `val_train` and measured on its validation users (never the test users: this
    is the table a configuration is chosen from). One row per configuration, mean over seeds."""
    protocol = _protocol(dataset, config)
    splits = [make_split(dataset, SplitConfig(protocol=protocol, seed=seed)) for seed in config.seeds]
    grid = [params | config.overrides for params in (grid or sweep_grid())]
    rows = []
    with tqdm(total=len(grid) * len(splits), desc=f"persona sweep on {dataset.name}", disable=not progress) as bar:
        for params in grid:
            per_seed = []
            for split in splits:
                model = build_model("persona", params, split.seed)
                started = time.perf_counter()
                model.fit(split.val_train)
                fit_s = time.perf_counter() - started
                result = evaluate(model, split.val, catalog=split.catalog, recall_denominator=split.recall_denominator)
                per_seed.append({"val_ndcg@100": result.metrics["ndcg@100"], "val_recall@20": result.metrics["recall@20"],
                                 "state_bytes": float(model.state_bytes), "fit_s": fit_s})
                bar.update()
            rows.append(aggregate("persona", per_seed) | {key: params[key] for key in SWEEP_COLUMNS[1:4]})
    return BenchResult(suite="accuracy", dataset=dataset.name, protocol=f"{protocol}, validation users (sweep)",
                       config=asdict(config) | {"sweep": grid, "dataset_summary": dataset.summary()},
                       rows=rows, columns=SWEEP_COLUMNS)


def run_accuracy(dataset: InteractionDataset, config: AccuracyBenchConfig, progress: bool = True) -> BenchResult:
    """The accuracy suite on `dataset`: one row per model (see module docstring)."""
    unknown = [name for name in config.models if name not in MODELS]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; available: {', '.join(MODELS)}")
    unused = [key for key in config.overrides if not any(key in hyperparameter_names(name) for name in config.models)]
    if unused:
        raise ValueError(f"override(s) {unused} are hyperparameters of none of the models {list(config.models)}")
    protocol = _protocol(dataset, config)
    metric = config.tuning_metric or ("ndcg@20" if protocol == "fixed" else "ndcg@100")
    splits = {seed: make_split(dataset, SplitConfig(protocol=protocol, seed=seed)) for seed in config.seeds}
    rows = []
    with tqdm(total=len(config.models) * (1 + len(config.seeds)), desc=f"accuracy on {dataset.name}",
              disable=not progress) as bar:
        for name in config.models:
            rows.append(benchmark_model(dataset, name, splits, config, metric, bar))
    return BenchResult(
        suite="accuracy",
        dataset=dataset.name,
        protocol=protocol,
        config=asdict(config) | {"tuning_metric": metric, "dataset_summary": dataset.summary()},
        rows=rows,
        columns=(TABLE_COLUMNS if protocol != "fixed" else FIXED_SPLIT_COLUMNS)
        + [column for column in OPTIONAL_COLUMNS if any(column in row for row in rows)],
    )


# -- issue 11: where personas earn their place, and the encoder against the exact solve ---------
QUINTILE_PERSONAS = (1, 2, 3)
QUINTILE_COLUMNS = ["model", "n_personas", "quintile", "diversity_low", "diversity_high", "users", "ndcg@100",
                    "recall@20"]
INFERENCE_COLUMNS = ["model", "inference", "ndcg@10", "ndcg@100", "recall@20", "coverage@10", "fit_s",
                     "fold_in_users_per_s", "state_bytes"]


def history_diversity(fold_in: sp.csr_matrix, item_categories: np.ndarray | None,
                      item_embeddings: np.ndarray) -> tuple[np.ndarray, str]:
    """Diversity of each held-out user's fold-in history (n,) and what it measures.

    With item categories (n_items, C), row-normalised: the entropy (nats) of the history's
    category mix, the weight-averaged rows. Else the spread of the history in factor space:
    1 - |mean of the unit item embeddings| (0 when every item points the same way, near 1
    when they point every way)."""
    weights = sp.csr_matrix(fold_in, dtype=np.float64)
    totals = np.maximum(np.asarray(weights.sum(axis=1)).ravel(), 1e-12)[:, None]
    if item_categories is not None and item_categories.any():
        mix = (weights @ item_categories) / totals  # (n, C)
        mix = mix / np.maximum(mix.sum(axis=1, keepdims=True), 1e-12)
        with np.errstate(divide="ignore", invalid="ignore"):
            return -np.nansum(np.where(mix > 0, mix * np.log(mix), 0.0), axis=1), "entropy of the history's genres (nats)"
    unit = item_embeddings / np.maximum(np.linalg.norm(item_embeddings, axis=1, keepdims=True), 1e-12)
    mean = (weights @ unit) / totals
    return 1 - np.linalg.norm(mean, axis=1), "spread of the history in factor space (1 - |mean unit embedding|)"


def quintile_rows(model_name: str, n_personas: int, diversity: np.ndarray, ndcg: np.ndarray, recall: np.ndarray
                  ) -> list[dict[str, Any]]:
    """One row per quintile of `diversity` (n,), by rank (equal-sized groups, ties broken by
    user order), with the mean per-user NDCG@100 and Recall@20 in it."""
    ranks = np.empty(len(diversity), np.int64)
    ranks[np.argsort(diversity, kind="stable")] = np.arange(len(diversity))
    bins = ranks * 5 // max(len(diversity), 1)
    return [{"model": model_name, "n_personas": n_personas, "quintile": q + 1,
             "diversity_low": float(diversity[bins == q].min()), "diversity_high": float(diversity[bins == q].max()),
             "users": float((bins == q).sum()),
             "ndcg@100": float(np.nanmean(ndcg[bins == q])), "recall@20": float(np.nanmean(recall[bins == q]))}
            for q in range(5)]


def run_diversity_quintiles(dataset: InteractionDataset, config: AccuracyBenchConfig,
                            personas: tuple[int, ...] = QUINTILE_PERSONAS, progress: bool = True) -> BenchResult:
    """The persona model (default configuration, overrides applied) at M in `personas`, fitted on
    each seed's training matrix and evaluated on its test users, split into quintiles by the
    diversity of their fold-in history (`history_diversity`). One row per (M, quintile): mean
    over seeds with its standard deviation (key + "_std"); plus one row per M over all users
    (quintile 0) with coverage@10 and calibration KL@10 where item genres exist."""
    protocol = _protocol(dataset, config)
    categories = _item_categories(dataset)
    per_key: dict[tuple[int, int], list[dict[str, Any]]] = {}
    description = ""
    with tqdm(total=len(config.seeds) * len(personas), desc=f"diversity quintiles on {dataset.name}",
              disable=not progress) as bar:
        for seed in config.seeds:
            split = make_split(dataset, SplitConfig(protocol=protocol, seed=seed))
            for n_personas in personas:
                model = build_model("persona", config.overrides | {"n_personas": n_personas}, seed).fit(split.train)
                result = evaluate(model, split.test, catalog=split.catalog, recall_denominator=split.recall_denominator,
                                  item_categories=categories)
                diversity, description = history_diversity(split.test.fold_in, categories,
                                                           model.shared.item_embeddings)
                ndcg = ndcg_at_k(result.recommended, split.test.targets, 100)
                recall = recall_at_k(result.recommended, split.test.targets, 20, split.recall_denominator)
                overall = {key: value for key, value in result.metrics.items()
                           if key in ("ndcg@100", "recall@20", "coverage@10", "calibration_kl@10")}
                per_key.setdefault((n_personas, 0), []).append(overall | {"users": float(len(split.test))})
                for row in quintile_rows("persona", n_personas, diversity, ndcg, recall):
                    labels = ("model", "n_personas", "quintile")  # row labels, not metrics to average
                    per_key.setdefault((n_personas, row["quintile"]), []).append(
                        {key: value for key, value in row.items() if key not in labels})
                bar.update()
    rows = [aggregate("persona", values) | {"n_personas": n_personas, "quintile": quintile}
            for (n_personas, quintile), values in sorted(per_key.items(), key=lambda item: (item[0][1], item[0][0]))]
    return BenchResult(suite="accuracy", dataset=dataset.name, protocol=f"{protocol}, test users by history diversity",
                       config=asdict(config) | {"personas": list(personas), "diversity": description,
                                                "dataset_summary": dataset.summary()},
                       rows=rows, columns=QUINTILE_COLUMNS + ["coverage@10", "calibration_kl@10"])


def run_inference_comparison(dataset: InteractionDataset, config: AccuracyBenchConfig, repeats: int = 3,
                             progress: bool = True) -> BenchResult:
    """The persona model's exact inference against its amortized encoder over the same shared
    side (the same ALS fit: same data and seed), default configuration with the overrides: per
    seed both fitted on the training matrix and evaluated on the test users; fold-in speed is
    the best of `repeats` passes over the test users' histories. One row per inference."""
    protocol = _protocol(dataset, config)
    per_inference: dict[str, list[dict[str, Any]]] = {}
    with tqdm(total=2 * len(config.seeds), desc=f"exact vs encoder on {dataset.name}", disable=not progress) as bar:
        for seed in config.seeds:
            split = make_split(dataset, SplitConfig(protocol=protocol, seed=seed))
            for inference in ("exact", "encoder"):
                model = build_model("persona", config.overrides | {"inference": inference, "progress": False}, seed)
                started = time.perf_counter()
                model.fit(split.train)
                fit_s = time.perf_counter() - started
                result = evaluate(model, split.test, catalog=split.catalog, recall_denominator=split.recall_denominator)
                fold_in = best_seconds(lambda: model.fold_in(split.test.fold_in), repeats)
                per_inference.setdefault(inference, []).append(
                    result.metrics | {"fit_s": fit_s, "fold_in_users_per_s": len(split.test) / fold_in,
                                      "state_bytes": float(model.state_bytes)})
                bar.update()
    rows = [aggregate("persona", values) | {"inference": inference} for inference, values in per_inference.items()]
    return BenchResult(suite="accuracy", dataset=dataset.name, protocol=f"{protocol}, exact vs encoder",
                       config=asdict(config) | {"repeats": repeats, "dataset_summary": dataset.summary()},
                       rows=rows, columns=INFERENCE_COLUMNS)


#: `recsys-pref bench accuracy --models NAME` for issue 11's tables (NAME alone in --models)
PERSONA_TABLES = ("diversity-quintiles", "exact-vs-encoder")
QUICK_ENCODER = {"max_epochs": 2}  # the encoder's training in a quick run


def run_persona_table(name: str, dataset: InteractionDataset, config: AccuracyBenchConfig, quick: bool = False,
                      progress: bool = True) -> BenchResult:
    """Issue 11's table `name` (PERSONA_TABLES) with `config`'s seeds and overrides (e.g. the
    configuration the accuracy bench's tuning picked, via --set): "diversity-quintiles" is
    `run_diversity_quintiles` (M = 1 and 2 only when quick), "exact-vs-encoder" is
    `run_inference_comparison` (one timed pass and a 2-epoch encoder when quick)."""
    if name == "diversity-quintiles":
        return run_diversity_quintiles(dataset, config, (1, 2) if quick else QUINTILE_PERSONAS, progress)
    if name == "exact-vs-encoder":
        quick_config = replace(config, overrides=QUICK_ENCODER | config.overrides) if quick else config
        return run_inference_comparison(dataset, quick_config, 1 if quick else 3, progress)
    raise ValueError(f"unknown persona table {name!r}; valid: {', '.join(PERSONA_TABLES)}")
