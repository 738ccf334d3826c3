"""`recsys-pref bench safeguards`: the feedback-loop simulator (safeguards.simulator) with
each safeguard setting ("off", "calibrated", "shrinkage", "exploration", "all"), per round.

Protocol: a strong-generalization split (seed 0); the recommender is fitted once on the
training users; the simulated users are up to `n_users` held-out users, starting from their
fold-in histories. Their true tastes are the planted ones on `synthetic`, and elsewhere the
scores of a persona model fitted on all of the dataset's data (another seed). The settings
whose safeguards bound user states use a second recommender trained with those bounds (the
bounds apply in training and fold-in alike). Seeds vary the users' choices. Rows: one per
setting and round, metrics averaged over seeds (with "_std"); `target_check` in the config
compares round T with round 0 against the issue's targets. `write_plot` draws the metrics per
round beside the JSON.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from recsys_pref.bench.results import BenchResult
from recsys_pref.data import InteractionDataset, SplitConfig, make_split
from recsys_pref.evaluation.beyond_accuracy import item_category_matrix
from recsys_pref.models.persona import PersonaConfig, PersonaRecommender
from recsys_pref.models.state_bounds import StateBounds
from recsys_pref.safeguards.config import PRESETS, SafeguardsConfig
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
    simulation: rounds, slate size, choice model, drift, retraining. model: PersonaConfig
    overrides of the recommender (and of the truth model on datasets without planted tastes).
    truth_seed: seed of the truth model."""

    settings: tuple[str, ...] = PRESETS
    seeds: tuple[int, ...] = (0, 1, 2)
    n_users: int = 300
    test_share: float = 0.4
    simulation: SimulationConfig = SimulationConfig(drift=0.1)
    model: dict[str, Any] = field(default_factory=lambda: {"max_epochs": 30, "patience": 10, "progress": False})
    truth_seed: int = 1

    @classmethod
    def quick(cls) -> "SafeguardsBenchConfig":
        """A reduced run for tests: one seed, two rounds, a tiny model."""
        return cls(seeds=(0,), n_users=40, simulation=SimulationConfig(rounds=2, drift=0.1),
                   model={"n_bases": 8, "embedding_dim": 8, "hidden_dim": 32, "max_epochs": 2, "progress": False})


def run_safeguards(dataset: InteractionDataset, config: SafeguardsBenchConfig) -> BenchResult:
    """The simulator with every setting in `config.settings`; see the module docstring."""
    unknown = sorted(set(config.settings) - set(PRESETS))
    if unknown:
        raise ValueError(f"unknown safeguards setting(s) {unknown}; valid: {', '.join(PRESETS)}")
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
    for name in tqdm(config.settings, desc="safeguards settings"):
        safeguards = SafeguardsConfig.preset(name)
        bounds = safeguards.state_bounds
        if bounds not in builders:
            model = PersonaRecommender(replace(base_config, state_shrinkage=bounds.shrinkage,
                                               min_persona_entropy=bounds.min_persona_entropy,
                                               min_base_entropy=bounds.min_base_entropy)).fit(split.train)
            builders[bounds] = SlateBuilder.for_model(model, genres)
        simulation = Simulation(builders[bounds], tastes, histories, ~split.catalog, item_genres)
        runs = [simulation.run(replace(safeguards, **UNBOUNDED), replace(config.simulation, seed=seed))
                for seed in config.seeds]
        rows += _mean_over_seeds(name, runs)
    return BenchResult(
        "safeguards", dataset.name, f"feedback loop on {n_users} held-out users (strong generalization split)",
        {"bench": asdict(config), "target_check": target_check(rows, config.simulation.rounds)}, rows, COLUMNS,
    )


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


def target_check(rows: list[dict[str, Any]], rounds: int) -> dict[str, float | bool]:
    """The issue's targets at round T against round 0, "all" against "off": homogenization
    growth (mean Jaccard, and Chaney's relative to the ideal recommender) at most half,
    calibration KL at most half, NDCG@10 cost at most 3%."""
    table = {(row["safeguards"], row["round"]): row for row in rows}
    if ("off", rounds) not in table or ("all", rounds) not in table:
        return {}
    off, on = table[("off", rounds)], table[("all", rounds)]
    check: dict[str, float | bool] = {}
    for metric in ("homogenization", "homogenization_vs_ideal"):
        growth_off = off[metric] - table[("off", 0)][metric]
        growth_all = on[metric] - table[("all", 0)][metric]
        check[f"{metric}_growth_off"], check[f"{metric}_growth_all"] = growth_off, growth_all
        check[f"{metric}_growth_met"] = bool(growth_all <= 0.5 * growth_off) if growth_off > 0 else bool(growth_all <= 0)
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
