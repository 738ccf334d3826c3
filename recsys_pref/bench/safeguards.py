"""`recsys-pref bench safeguards`: the feedback-loop simulator (safeguards.simulator) with each
safeguard setting, per round, against the ideal recommender (for Chaney's homogenization).

Protocol: a strong-generalization split (seed 0); the recommender is fitted on the training
users; the simulated users are up to `n_users` of the held-out *test* users (the reported run)
or of the *validation* users (`population="validation"`, the run safeguards are tuned on: other
users, other choice seeds), starting from their fold-in histories. True tastes are the planted
ones on `synthetic` and elsewhere the scores of a persona model fitted on all the data (another
seed). Settings whose safeguards bound user states use a recommender trained with those bounds.
Every `retrain_every` rounds each setting's recommender is refitted from scratch (same config
and seed) on the training users plus the simulated users' grown histories (at most
`refit_users` of them, a seeded sample, so that a million users refit in seconds). Seeds vary the
users' choices (seed s draws with 1000 s + 0..; validation runs add 500). Rows: one per setting
and round (and the "ideal" recommender's), metrics as means over seeds with "_std".
`target_check` in the config reads the issue's targets at round T. `write_plot` draws metric
against round, one line per setting.

Population scale (`population_users` > 0, on `synthetic`): the model is fitted on
`population_train_users` training users and every user of the dataset is simulated, chunk by
chunk (safeguards.simulator), with one seed; a simulation that would not fit in memory is
refused before it starts. `run_safeguards_sweep` runs a grid of settings on the validation
population and reports each at round T against "off".
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields, replace
from itertools import product
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from recsys_pref.bench.results import BenchResult
from recsys_pref.data import InteractionDataset, SplitConfig, make_split
from recsys_pref.evaluation.beyond_accuracy import item_category_matrix
from recsys_pref.models.persona import PersonaConfig, PersonaRecommender
from recsys_pref.models.state_bounds import StateBounds
from recsys_pref.safeguards.config import BOUNDED_STATES, PRESETS, SafeguardsConfig, load_safeguards
from recsys_pref.safeguards.simulator import (
    METRICS, Simulation, SimulationConfig, TrueTastes, check_memory, estimated_bytes,
)
from recsys_pref.safeguards.slate import SlateBuilder

COLUMNS = ["safeguards", "round"] + list(METRICS)
PLOT_FILE = "safeguards.png"
UNBOUNDED = {"shrinkage": 0.0, "min_persona_entropy": 0.0, "min_base_entropy": 0.0}
POPULATIONS = ("test", "validation")
#: +1: higher is worse (harm), -1: lower is worse; the "no metric worse" check reads these.
HARM = {"ndcg@10": -1, "true_utility": -1, "calibration_kl": 1, "persona_entropy": -1, "homogenization": 1,
        "chaney_homogenization": 1, "population_homogenization": 1, "chaney_population_homogenization": 1,
        "narrowing": 1, "persona_narrowing": 1, "polarization": 1, "effective_clusters": -1, "gini": 1,
        "coverage": -1, "taste_drift": 1}


@dataclass(frozen=True)
class SafeguardsBenchConfig:
    """settings: SafeguardsConfig presets compared. seeds: choice-draw seeds. n_users: cap on
    simulated users. test_share: share of users held out. population: "test" (reported) or
    "validation" (tuning) users. simulation: rounds, slate size, choice model, drift, retraining
    (default: refit every 2 rounds, tastes drift 0.1). model: PersonaConfig overrides of the
    recommender (and of the truth model on datasets without planted tastes). truth_seed: seed of
    the truth model. refit_users: at most this many simulated users join a refit.
    population_users: > 0 runs the population-scale mode (module docstring) on that many users
    of a synthetic dataset; population_train_users: the users that model is fitted on.
    all_from: a safeguards YAML (or name under conf/) that the "all" setting runs instead of the
    preset: the settings tuned for a dataset on its validation simulation."""

    settings: tuple[str, ...] = ("off", "all")
    seeds: tuple[int, ...] = (0, 1, 2)
    n_users: int = 200
    test_share: float = 0.4
    population: str = "test"
    simulation: SimulationConfig = SimulationConfig(drift=0.1, retrain_every=2)
    model: dict[str, Any] = field(default_factory=lambda: {"max_epochs": 10, "patience": 10, "progress": False})
    truth_seed: int = 1
    refit_users: int = 5000
    population_users: int = 0
    population_train_users: int = 5000
    all_from: str = ""

    def __post_init__(self) -> None:
        if self.population not in POPULATIONS:
            raise ValueError(f"population must be one of {', '.join(POPULATIONS)}, got {self.population!r}")
        unknown = sorted(set(self.settings) - set(PRESETS))
        if unknown:
            raise ValueError(f"unknown safeguards setting(s) {unknown}; valid: {', '.join(PRESETS)}")
        if min(self.n_users, self.refit_users, self.population_train_users) < 2 or self.population_users < 0:
            raise ValueError("n_users, refit_users and population_train_users must be >= 2, population_users >= 0")

    @classmethod
    def quick(cls) -> "SafeguardsBenchConfig":
        """A reduced run for tests: one seed, two rounds with one refit, a tiny model."""
        return cls(seeds=(0,), n_users=40, simulation=SimulationConfig(rounds=2, drift=0.1, retrain_every=1),
                   model={"n_bases": 8, "embedding_dim": 8, "hidden_dim": 32, "max_epochs": 2, "progress": False},
                   population_train_users=200)

    def with_overrides(self, overrides: dict[str, Any]) -> "SafeguardsBenchConfig":
        """`bench --set KEY=VALUE`: KEY a SimulationConfig field (rounds, drift, retrain_every,
        chunk_users, ...), a field of this config (n_users, population, refit_users,
        population_users, ...), or else a PersonaConfig field of the models."""
        simulation_keys = {item.name for item in fields(SimulationConfig)} - {"seed"}
        own_keys = {item.name for item in fields(self)} - {"settings", "seeds", "simulation", "model"}
        simulation = replace(self.simulation, **{key: value for key, value in overrides.items() if key in simulation_keys})
        own = {key: value for key, value in overrides.items() if key in own_keys}
        model = self.model | {key: value for key, value in overrides.items() if key not in simulation_keys | own_keys}
        return replace(self, simulation=simulation, model=model, **own)


def run_safeguards(dataset: InteractionDataset, config: SafeguardsBenchConfig,
                   variants: dict[str, SafeguardsConfig] | None = None) -> BenchResult:
    """The simulator with every setting in `config.settings` (or the named `variants`); see the
    module docstring."""
    if config.population_users:
        return run_population(dataset, config, variants)
    variants = variants or setting_variants(config)
    split = make_split(dataset, SplitConfig(test_share=config.test_share, val_share=0.1, seed=0))
    held_out = split.test if config.population == "test" else split.val
    n_users = min(config.n_users, len(held_out))
    if n_users < 2:
        raise ValueError(f"{dataset.name} leaves {n_users} {config.population} user(s) to simulate; need at least 2")
    users, histories = held_out.users[:n_users], held_out.fold_in[:n_users]
    base_config = PersonaConfig.preset("persona", **config.model)
    tastes = _tastes(dataset, users, replace(base_config, seed=config.truth_seed))
    started = time.perf_counter()
    rows = _simulate(dataset, split.train, tastes, histories, ~split.catalog, base_config, config, variants)
    protocol = (f"feedback loop on {n_users} held-out {config.population} users (strong generalization split), "
                f"{_loop_words(config)}")
    return _result(dataset, protocol, config, variants, rows, time.perf_counter() - started)


def run_population(dataset: InteractionDataset, config: SafeguardsBenchConfig,
                   variants: dict[str, SafeguardsConfig] | None = None) -> BenchResult:
    """Population scale (module docstring): every user of a planted `synthetic` dataset."""
    if dataset.ground_truth is None:
        raise ValueError("the population-scale simulation needs planted tastes: use --dataset synthetic")
    everything = dataset.to_csr()
    n_users = min(config.population_users, everything.shape[0])
    if n_users < config.population_users:
        raise ValueError(f"the dataset has {everything.shape[0]} users, fewer than population_users="
                         f"{config.population_users}: generate it with --synthetic n_users=")
    variants = variants or setting_variants(config)
    base_config = PersonaConfig.preset("persona", **config.model)
    largest_pool = max(variant.candidates for variant in variants.values())
    estimate = estimated_bytes(n_users, everything.shape[1], dataset.ground_truth.item_embeddings.shape[1],
                               int(everything[:n_users].nnz), config.simulation, largest_pool)
    check_memory(estimate)
    train_users = np.sort(np.random.default_rng(0).choice(n_users, min(config.population_train_users, n_users),
                                                           replace=False))
    started = time.perf_counter()
    rows = _simulate(dataset, everything[train_users], TrueTastes.planted(dataset, np.arange(n_users)),
                     everything[:n_users], None, base_config, config, variants, progress=True)
    protocol = (f"population scale: {n_users} simulated users (planted tastes; all of them), the model fitted on "
                f"{len(train_users)} of them, {_loop_words(config)}; estimated peak {estimate / 2**30:.2f} GiB")
    return _result(dataset, protocol, config, variants, rows, time.perf_counter() - started)


def setting_variants(config: SafeguardsBenchConfig) -> dict[str, SafeguardsConfig]:
    """The named settings of a run: the presets of config.settings, "all" read from
    config.all_from when given."""
    variants = {name: SafeguardsConfig.preset(name) for name in config.settings}
    if config.all_from and "all" in variants:
        variants["all"] = load_safeguards(config.all_from)
    return variants


def _loop_words(config: SafeguardsBenchConfig) -> str:
    every = config.simulation.retrain_every
    return (f"refit every {every} rounds (at most {config.refit_users} simulated users join a refit)" if every
            else "fold-in only")


def _simulate(dataset: InteractionDataset, train: sp.csr_matrix, tastes: TrueTastes, histories: sp.csr_matrix,
              banned: np.ndarray | None, base_config: PersonaConfig, config: SafeguardsBenchConfig,
              variants: dict[str, SafeguardsConfig], progress: bool = False) -> list[dict[str, Any]]:
    """Rows (mean over seeds) of the ideal recommender and every variant."""
    genres = dataset.items["genres"].to_list() if "genres" in dataset.items.columns else None
    item_genres = item_category_matrix(genres)[0] if genres and any(genres) else None
    builders: dict[StateBounds, tuple[SlateBuilder, Callable]] = {}
    runs: dict[str, list[list[dict[str, float]]]] = {}
    seed_offset = 500 if config.population == "validation" else 0
    ideal = Simulation(None, tastes, histories, banned, item_genres)
    for seed in tqdm(config.seeds, desc="seeds", disable=len(config.seeds) < 2):
        simulation_config = replace(config.simulation, seed=1000 * seed + seed_offset)
        reference = _timed(ideal.run, SafeguardsConfig(), simulation_config, progress)
        runs.setdefault("ideal", []).append(reference)
        for name, safeguards in variants.items():
            bounds = safeguards.state_bounds
            if bounds not in builders:
                model_config = replace(base_config, state_shrinkage=bounds.shrinkage,
                                       min_persona_entropy=bounds.min_persona_entropy,
                                       min_base_entropy=bounds.min_base_entropy)
                builders[bounds] = (SlateBuilder.for_model(PersonaRecommender(model_config).fit(train), genres),
                                    _refit_on(train, model_config, config.refit_users))
            builder, refit = builders[bounds]
            simulation = replace(ideal, builder=builder, retrain=refit)
            runs.setdefault(name, []).append(_timed(simulation.run, replace(safeguards, **UNBOUNDED), simulation_config,
                                                    progress, reference=reference))
    return [row for name, per_seed in runs.items() for row in _mean_over_seeds(name, per_seed)]


def _timed(run: Callable[..., list[dict[str, float]]], *args: Any, **kwargs: Any) -> list[dict[str, float]]:
    """The rows of run(*args, **kwargs), each with the run's wall time in seconds (wall_s)."""
    started = time.perf_counter()
    rows = run(*args, **kwargs)
    return [row | {"wall_s": time.perf_counter() - started} for row in rows]


def _result(dataset: InteractionDataset, protocol: str, config: SafeguardsBenchConfig,
            variants: dict[str, SafeguardsConfig], rows: list[dict[str, Any]], wall_s: float) -> BenchResult:
    return BenchResult(
        "safeguards", dataset.name, protocol,
        {"bench": asdict(config), "variants": {name: asdict(value) for name, value in variants.items()},
         "target_check": target_check(rows, config.simulation.rounds), "wall_s": wall_s}, rows, COLUMNS)


def _refit_on(train: sp.csr_matrix, model_config: PersonaConfig, refit_users: int
              ) -> Callable[[sp.csr_matrix], PersonaRecommender]:
    """A refit on the training users plus the simulated users' current histories (at most
    refit_users of them, a seeded sample fixed for the run), stacked below."""
    def refit(histories: sp.csr_matrix) -> PersonaRecommender:
        chosen = histories
        if histories.shape[0] > refit_users:
            chosen = histories[np.sort(np.random.default_rng(0).choice(histories.shape[0], refit_users, replace=False))]
        return PersonaRecommender(model_config).fit(sp.vstack([train, chosen]).tocsr())
    return refit


SWEEP_COLUMNS = ["safeguards", "calibration_lambda", "calibrate_over", "calibrated_order", "candidates",
                 "exposure_penalty", "exploration_share", "bounded", "ndcg@10", "ndcg_cost", "calibration_kl",
                 "calibration_kl_ratio", "chaney_homogenization", "chaney_population_homogenization",
                 "persona_narrowing", "gini", "coverage"]


def sweep_variants(lambdas: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4),
                   systems: tuple[tuple[str, ...], ...] = (("genres",), ("personas", "genres")),
                   candidates: tuple[int, ...] = (30, 100), exposure_penalties: tuple[float, ...] = (0.0, 0.1),
                   exploration_shares: tuple[float, ...] = (0.0,), bounded: tuple[bool, ...] = (False,),
                   ) -> dict[str, SafeguardsConfig]:
    """"off" and every combination of calibration lambda, category systems, pool size,
    exposure penalty, exploration share and bounded states (the "shrinkage" preset's bounds),
    named by their values."""
    variants = {"off": SafeguardsConfig()}
    for lam, over, pool, penalty, share, bound in product(lambdas, systems, candidates, exposure_penalties,
                                                         exploration_shares, bounded):
        name = (f"lambda={lam} over={'+'.join(over)} pool={pool} exposure={penalty} explore={share}"
                f"{' bounded' if bound else ''}")
        variants[name] = SafeguardsConfig(calibration_lambda=lam, calibrate_over=over, candidates=pool,
                                          exposure_penalty=penalty, exploration_share=share,
                                          **(BOUNDED_STATES if bound else {}))
    return variants


def run_safeguards_sweep(dataset: InteractionDataset, config: SafeguardsBenchConfig,
                         variants: dict[str, SafeguardsConfig] | None = None) -> BenchResult:
    """Every variant (default: sweep_variants()) through the simulator on the validation users;
    one row per variant at round T with its NDCG@10 cost and calibration KL ratio against "off"."""
    variants = variants or sweep_variants()
    if "off" not in variants:
        raise ValueError('the sweep needs an "off" variant to compare against')
    result = run_safeguards(dataset, replace(config, population="validation"), variants)
    final = {row["safeguards"]: row for row in result.rows if row["round"] == config.simulation.rounds}
    off = final["off"]
    rows = []
    for name, safeguards in variants.items():
        row = final[name]
        rows.append({"safeguards": name, "calibration_lambda": safeguards.calibration_lambda,
                     "calibrate_over": "+".join(safeguards.calibrate_over),
                     "calibrated_order": safeguards.calibrated_order, "candidates": safeguards.candidates,
                     "exposure_penalty": safeguards.exposure_penalty,
                     "exploration_share": safeguards.exploration_share, "bounded": safeguards.state_bounds.active,
                     **{metric: row[metric] for metric in METRICS},
                     "ndcg_cost": 1.0 - row["ndcg@10"] / off["ndcg@10"],
                     "calibration_kl_ratio": row["calibration_kl"] / off["calibration_kl"]})
    return BenchResult("safeguards", dataset.name, result.protocol + f", sweep read at round {config.simulation.rounds}",
                       result.config, rows, SWEEP_COLUMNS)


def _tastes(dataset: InteractionDataset, users: np.ndarray, truth_config: PersonaConfig) -> TrueTastes:
    """Planted tastes where the dataset has them, else a persona model fitted on all data."""
    if dataset.ground_truth is not None:
        return TrueTastes.planted(dataset, users)
    everything = dataset.to_csr()
    return TrueTastes.fitted(PersonaRecommender(truth_config).fit(everything), everything[users])


def _mean_over_seeds(name: str, runs: list[list[dict[str, float]]]) -> list[dict[str, Any]]:
    rows = []
    for per_seed in zip(*runs):
        row: dict[str, Any] = {"safeguards": name, "round": per_seed[0]["round"],
                               "wall_s": float(np.mean([run["wall_s"] for run in per_seed]))}
        for metric in METRICS:
            values = np.array([run[metric] for run in per_seed], dtype=float)
            row[metric] = float(np.mean(values))
            row[f"{metric}_std"] = float(np.std(values))
        rows.append(row)
    return rows


NOT_MEASURABLE = "not measurable"
GROWTH_TARGETS = ("chaney_homogenization", "chaney_population_homogenization")
#: Utility (judged by the NDCG@10 cost budget, not by "no metric worse"): true_utility is the
#: slates' mean true utility, the quantity NDCG@10 normalises; any positive NDCG cost lowers it.
UTILITY = ("ndcg@10", "true_utility")
#: Consumption patterns that the ideal recommender (each user's own best items) also produces:
#: judged by their excess over the ideal's value in their HARM direction, max(0, sign (value -
#: ideal)), as Chaney et al. judge homogenization: what people's own tastes produce is not the
#: recommender's doing, and a value on the benign side of the ideal (wider exposure, broader
#: consumption, less drift than people's own best items bring) is no harm. Chaney's measures are
#: these excesses for the two homogenizations, so they are not judged twice. The rest
#: (calibration KL, persona entropy and narrowing: properties of slates, not of consumption) are
#: judged raw, in their HARM direction.
IDEAL_JUDGED = ("homogenization", "population_homogenization", "narrowing", "polarization",
                "effective_clusters", "gini", "coverage", "taste_drift")


def target_check(rows: list[dict[str, Any]], rounds: int, on: str = "all") -> dict[str, Any]:
    """The issue's targets at round T, `on` against "off": calibration KL at most half of off's;
    Chaney homogenization growth (round T minus round 0) at most half of off's (with nearest-taste
    and with random pairs; "not measurable" when off's does not grow: nothing to halve); NDCG@10
    cost at most 3%; and no metric worse with safeguards on. `worse_raw` lists every metric of
    HARM but NDCG@10 worse in its HARM direction by more than the two seed stds; `worse` (the
    target) judges utility by the cost budget (UTILITY) and IDEAL_JUDGED metrics by their excess
    over the "ideal" rows' value (raw when the rows have no ideal), the rest as `worse_raw` does;
    `ideal_excess` gives off's and on's excesses."""
    table = {(row["safeguards"], row["round"]): row for row in rows}
    if ("off", rounds) not in table or (on, rounds) not in table:
        return {}
    off, safe, ideal = table[("off", rounds)], table[(on, rounds)], table.get(("ideal", rounds))
    check: dict[str, Any] = {}
    for metric in GROWTH_TARGETS:
        growth_off = off[metric] - table[("off", 0)][metric]
        growth_on = safe[metric] - table[(on, 0)][metric]
        check[f"{metric}_growth_off"], check[f"{metric}_growth_on"] = growth_off, growth_on
        check[f"{metric}_growth_met"] = bool(growth_on <= 0.5 * growth_off) if growth_off > 0 else NOT_MEASURABLE
    check["calibration_kl_ratio"] = safe["calibration_kl"] / off["calibration_kl"]
    check["calibration_kl_met"] = bool(check["calibration_kl_ratio"] <= 0.5)
    check["ndcg_cost"] = 1.0 - safe["ndcg@10"] / off["ndcg@10"]
    check["ndcg_cost_met"] = bool(check["ndcg_cost"] <= 0.03)

    def noise(metric: str) -> float:
        return safe.get(f"{metric}_std", 0.0) + off.get(f"{metric}_std", 0.0)

    check["worse_raw"] = [metric for metric, sign in HARM.items() if metric != "ndcg@10" and
                          sign * (safe[metric] - off[metric]) > noise(metric)]
    judged_by_ideal = tuple(metric for metric in IDEAL_JUDGED
                            if ideal is not None and np.isfinite(ideal.get(metric, np.nan)))
    check["ideal_excess"] = {metric: {name: max(0.0, HARM[metric] * (row[metric] - ideal[metric]))
                                      for name, row in (("off", off), ("on", safe))} for metric in judged_by_ideal}
    skipped = UTILITY + judged_by_ideal + (GROWTH_TARGETS if "homogenization" in judged_by_ideal else ())
    check["worse"] = [metric for metric in check["worse_raw"] if metric not in skipped] + \
        [metric for metric in judged_by_ideal
         if check["ideal_excess"][metric]["on"] - check["ideal_excess"][metric]["off"] > noise(metric)]
    check["no_metric_worse_met"] = not check["worse"]
    return check


def metric_rounds_figure(rows: list[dict[str, Any]], metrics: tuple[str, ...] | list[str], title: str,
                         columns: int = 4):
    """A matplotlib figure: one panel per metric against round, one line per "safeguards" value
    of `rows` (the bench's rows, or any with "safeguards", "round" and the metrics)."""
    import matplotlib.pyplot as plt

    settings = list(dict.fromkeys(row["safeguards"] for row in rows))
    n_rows = -(-len(metrics) // columns)
    figure, axes = plt.subplots(n_rows, columns, figsize=(3.4 * columns, 2.7 * n_rows), constrained_layout=True)
    for axis, metric in zip(np.ravel(axes), metrics):
        for name in settings:
            mine = [row for row in rows if row["safeguards"] == name and row.get(metric) is not None]
            axis.plot([row["round"] for row in mine], [row[metric] for row in mine], marker="o", ms=3, label=name,
                      linestyle="--" if name == "ideal" else "-")
        axis.set_title(metric, fontsize=9)
        axis.set_xlabel("round", fontsize=8)
    for axis in np.ravel(axes)[len(metrics):]:
        axis.set_visible(False)
    np.ravel(axes)[0].legend(fontsize=7)
    figure.suptitle(title)
    return figure


def write_plot(result: BenchResult, out_dir: Path, file_name: str = PLOT_FILE) -> Path:
    """DIR/safeguards.png (atomically): metric_rounds_figure of the result's rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = metric_rounds_figure(result.rows, METRICS, f"safeguards feedback loop — {result.dataset}: "
                                                        f"{result.protocol[:90]}")
    path = Path(out_dir) / file_name
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(temporary, dpi=80)
    plt.close(figure)
    temporary.replace(path)
    return path
