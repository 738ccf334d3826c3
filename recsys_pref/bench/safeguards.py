"""`recsys-pref bench safeguards`: the feedback-loop simulator (safeguards.simulator) with
each safeguard setting ("off", "calibrated", "shrinkage", "exploration", "all"), per round.

Protocol: a strong-generalization split (seed 0); the recommender is fitted once on the
training users; the simulated users are up to `n_users` held-out users, starting from their
fold-in histories. Their true tastes are the planted ones on `synthetic`, and elsewhere the
scores of a persona model fitted on all of the dataset's data (another seed). The settings
whose safeguards bound user states use a second recommender trained with those bounds (the
bounds apply in training and fold-in alike). With `retrain_every` > 0 each setting's
recommender is refitted from scratch (same config and seed) every that many rounds on the
training users plus the simulated users' grown histories, as Chaney et al. retrain on the
accumulated data: the shared model then learns from its own recommendations' consumption,
which is the echo-chamber mechanism. Seeds vary the users' choices. Rows: one per setting and
round, metrics averaged over seeds (with "_std"); `target_check` in the config compares round T
with round 0 against the issue's targets. `write_plot` draws the metrics per round beside the
JSON. `run_safeguards_sweep` runs a grid of safeguard settings and reports each at round T
against "off" (for choosing the "all" preset on a validation dataset).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from itertools import product
from pathlib import Path
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from recsys_pref.bench.results import BenchResult
from recsys_pref.data import InteractionDataset, SplitConfig, make_split
from recsys_pref.evaluation.beyond_accuracy import item_category_matrix
from recsys_pref.models.persona import PersonaConfig, PersonaRecommender
from recsys_pref.models.state_bounds import StateBounds
from recsys_pref.safeguards.config import BOUNDED_STATES, PRESETS, SafeguardsConfig
from recsys_pref.safeguards.simulator import Simulation, SimulationConfig, TrueTastes
from recsys_pref.safeguards.slate import SlateBuilder

METRICS = ["ndcg@10", "true_utility", "homogenization", "homogenization_vs_ideal", "calibration_kl",
           "persona_entropy", "coverage", "gini", "taste_drift"]
COLUMNS = ["safeguards", "round"] + METRICS
PLOT_FILE = "safeguards.png"
UNBOUNDED = {"shrinkage": 0.0, "min_persona_entropy": 0.0, "min_base_entropy": 0.0}


@dataclass(frozen=True)
class SafeguardsBenchConfig:
    """settings: SafeguardsConfig presets compared. seeds: choice-draw seeds. n_users: cap on
    simulated users. test_share: share of users held out (the simulated users come from them).
    simulation: rounds, slate size, choice model, drift, retraining (default: refit every 2
    rounds, tastes drift 0.1). model: PersonaConfig overrides of the recommender (and of the
    truth model on datasets without planted tastes). truth_seed: seed of the truth model."""

    settings: tuple[str, ...] = PRESETS
    seeds: tuple[int, ...] = (0, 1)
    n_users: int = 200
    test_share: float = 0.4
    simulation: SimulationConfig = SimulationConfig(drift=0.1, retrain_every=2)
    model: dict[str, Any] = field(default_factory=lambda: {"max_epochs": 30, "patience": 10, "progress": False})
    truth_seed: int = 1

    @classmethod
    def quick(cls) -> "SafeguardsBenchConfig":
        """A reduced run for tests: one seed, two rounds with one refit, a tiny model."""
        return cls(seeds=(0,), n_users=40, simulation=SimulationConfig(rounds=2, drift=0.1, retrain_every=1),
                   model={"n_bases": 8, "embedding_dim": 8, "hidden_dim": 32, "max_epochs": 2, "progress": False})

    def with_overrides(self, overrides: dict[str, Any]) -> "SafeguardsBenchConfig":
        """`bench --set KEY=VALUE`: KEY a SimulationConfig field (rounds, drift, retrain_every,
        ...), n_users, test_share or truth_seed; any other key overrides the PersonaConfig."""
        simulation_keys = {item.name for item in fields(SimulationConfig)} - {"seed"}
        own_keys = {"n_users", "test_share", "truth_seed"}
        simulation = replace(self.simulation, **{key: value for key, value in overrides.items() if key in simulation_keys})
        own = {key: value for key, value in overrides.items() if key in own_keys}
        model = self.model | {key: value for key, value in overrides.items() if key not in simulation_keys | own_keys}
        return replace(self, simulation=simulation, model=model, **own)


def run_safeguards(dataset: InteractionDataset, config: SafeguardsBenchConfig,
                   variants: dict[str, SafeguardsConfig] | None = None) -> BenchResult:
    """The simulator with every setting in `config.settings` (or the named `variants`); see the
    module docstring."""
    unknown = sorted(set(config.settings) - set(PRESETS))
    if unknown:
        raise ValueError(f"unknown safeguards setting(s) {unknown}; valid: {', '.join(PRESETS)}")
    variants = variants or {name: SafeguardsConfig.preset(name) for name in config.settings}
    split = make_split(dataset, SplitConfig(test_share=config.test_share, val_share=0.1, seed=0))
    n_users = min(config.n_users, len(split.test))
    if n_users < 2:
        raise ValueError(f"{dataset.name} leaves {n_users} held-out user(s) to simulate; need at least 2")
    users, histories = split.test.users[:n_users], split.test.fold_in[:n_users]
    base_config = PersonaConfig.preset("persona", **config.model)
    tastes = _tastes(dataset, users, replace(base_config, seed=config.truth_seed))
    genres = dataset.items["genres"].to_list() if "genres" in dataset.items.columns else None
    item_genres = item_category_matrix(genres)[0] if genres and any(genres) else None
    builders: dict[StateBounds, SlateBuilder] = {}
    rows = []
    for name, safeguards in tqdm(variants.items(), desc="safeguards settings"):
        bounds = safeguards.state_bounds
        model_config = replace(base_config, state_shrinkage=bounds.shrinkage,
                               min_persona_entropy=bounds.min_persona_entropy, min_base_entropy=bounds.min_base_entropy)
        if bounds not in builders:
            builders[bounds] = SlateBuilder.for_model(PersonaRecommender(model_config).fit(split.train), genres)
        simulation = Simulation(builders[bounds], tastes, histories, ~split.catalog, item_genres,
                                retrain=_refit_on(split.train, model_config))
        runs = [simulation.run(replace(safeguards, **UNBOUNDED), replace(config.simulation, seed=seed))
                for seed in config.seeds]
        rows += _mean_over_seeds(name, runs)
    protocol = (f"feedback loop on {n_users} held-out users (strong generalization split), "
                f"{'refit every ' + str(config.simulation.retrain_every) + ' rounds' if config.simulation.retrain_every else 'fold-in only'}")
    return BenchResult(
        "safeguards", dataset.name, protocol,
        {"bench": asdict(config), "variants": {name: asdict(value) for name, value in variants.items()},
         "target_check": target_check(rows, config.simulation.rounds)}, rows, COLUMNS,
    )


def _refit_on(train: sp.csr_matrix, model_config: PersonaConfig) -> Callable[[sp.csr_matrix], PersonaRecommender]:
    """A refit on the training users plus the simulated users' current histories (stacked below)."""
    def refit(histories: sp.csr_matrix) -> PersonaRecommender:
        return PersonaRecommender(model_config).fit(sp.vstack([train, histories]).tocsr())
    return refit


SWEEP_COLUMNS = ["safeguards", "calibration_lambda", "calibrate_over", "exploration_share", "bounded", "ndcg@10",
                 "ndcg_cost", "calibration_kl", "calibration_kl_ratio", "homogenization", "homogenization_vs_ideal",
                 "persona_entropy", "coverage"]


def sweep_variants(lambdas: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3),
                   systems: tuple[tuple[str, ...], ...] = (("personas", "genres"), ("genres",)),
                   exploration_shares: tuple[float, ...] = (0.0, 0.1), bounded: tuple[bool, ...] = (False, True),
                   ) -> dict[str, SafeguardsConfig]:
    """"off" and every combination of calibration lambda, category systems, exploration share
    and bounded states (the "shrinkage" preset's bounds), named by their values."""
    variants = {"off": SafeguardsConfig()}
    for lam, over, share, bound in product(lambdas, systems, exploration_shares, bounded):
        name = f"lambda={lam} over={'+'.join(over)} explore={share}{' bounded' if bound else ''}"
        variants[name] = SafeguardsConfig(calibration_lambda=lam, calibrate_over=over, exploration_share=share,
                                          **(BOUNDED_STATES if bound else {}))
    return variants


def run_safeguards_sweep(dataset: InteractionDataset, config: SafeguardsBenchConfig,
                         variants: dict[str, SafeguardsConfig] | None = None) -> BenchResult:
    """Every variant (default: sweep_variants()) through the simulator; one row per variant at
    round T with its NDCG@10 cost and calibration KL ratio against "off" at round T."""
    variants = variants or sweep_variants()
    if "off" not in variants:
        raise ValueError('the sweep needs an "off" variant to compare against')
    result = run_safeguards(dataset, config, variants)
    final = {row["safeguards"]: row for row in result.rows if row["round"] == config.simulation.rounds}
    off = final["off"]
    rows = []
    for name, safeguards in variants.items():
        row = final[name]
        rows.append({"safeguards": name, "calibration_lambda": safeguards.calibration_lambda,
                     "calibrate_over": "+".join(safeguards.calibrate_over),
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
        row: dict[str, Any] = {"safeguards": name, "round": per_seed[0]["round"]}
        for metric in METRICS:
            values = np.array([run[metric] for run in per_seed], dtype=float)
            row[metric] = float(np.mean(values))
            row[f"{metric}_std"] = float(np.std(values))
        rows.append(row)
    return rows


NOT_MEASURABLE = "not measurable"


def target_check(rows: list[dict[str, Any]], rounds: int) -> dict[str, float | bool | str]:
    """The issue's targets at round T against round 0, "all" against "off": homogenization
    growth (mean Jaccard, and Chaney's relative to the ideal recommender) at most half,
    calibration KL at most half, NDCG@10 cost at most 3%. A growth target whose quantity does
    not grow without safeguards ("off") cannot tell safeguards apart: it is "not measurable"."""
    table = {(row["safeguards"], row["round"]): row for row in rows}
    if ("off", rounds) not in table or ("all", rounds) not in table:
        return {}
    off, on = table[("off", rounds)], table[("all", rounds)]
    check: dict[str, float | bool | str] = {}
    for metric in ("homogenization", "homogenization_vs_ideal"):
        growth_off = off[metric] - table[("off", 0)][metric]
        growth_all = on[metric] - table[("all", 0)][metric]
        check[f"{metric}_growth_off"], check[f"{metric}_growth_all"] = growth_off, growth_all
        check[f"{metric}_growth_met"] = bool(growth_all <= 0.5 * growth_off) if growth_off > 0 else NOT_MEASURABLE
    check["calibration_kl_ratio"] = on["calibration_kl"] / off["calibration_kl"]
    check["calibration_kl_met"] = bool(check["calibration_kl_ratio"] <= 0.5)
    check["ndcg_cost"] = 1.0 - on["ndcg@10"] / off["ndcg@10"]
    check["ndcg_cost_met"] = bool(check["ndcg_cost"] <= 0.03)
    return check


def write_plot(result: BenchResult, out_dir: Path) -> Path:
    """DIR/safeguards.png: each metric per round, one line per setting (mean over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = list(dict.fromkeys(row["safeguards"] for row in result.rows))
    figure, axes = plt.subplots(3, 3, figsize=(13, 10), constrained_layout=True)
    for axis, metric in zip(axes.ravel(), METRICS):
        for name in settings:
            rows = [row for row in result.rows if row["safeguards"] == name]
            axis.plot([row["round"] for row in rows], [row[metric] for row in rows], marker="o", ms=3, label=name)
        axis.set_title(metric)
        axis.set_xlabel("round")
    axes.ravel()[0].legend()
    figure.suptitle(f"safeguards feedback loop — {result.dataset}")
    path = Path(out_dir) / PLOT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(temporary, dpi=90)
    plt.close(figure)
    temporary.replace(path)
    return path
