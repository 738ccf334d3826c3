"""Benchmark suites behind `recsys-pref bench SUITE`."""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from recsys_pref.bench.results import BenchResult

if TYPE_CHECKING:  # the CLI imports this module for the suite names: keep it light
    from recsys_pref.data.dataset import InteractionDataset


def run_suite(
    suite: str,
    dataset: "InteractionDataset",
    *,
    quick: bool = False,
    models: list[str] | None = None,
    seeds: int | None = None,
    budget: int | None = None,
    overrides: dict[str, Any] | None = None,
    sweep: bool = False,
) -> BenchResult:
    """Run benchmark `suite` on `dataset`; `quick` is the reduced run used by tests.

    budget: configurations tried per model (accuracy); overrides: hyperparameters fixed for
    every model whose config has them (for example accelerator="gpu"), recorded in the result;
    sweep: the accuracy suite's persona (M, K, tau) sweep on validation users instead.
    """
    if suite == "accuracy":
        from recsys_pref.bench.accuracy import (
            BASELINE_NAMES, PERSONA_TABLES, AccuracyBenchConfig, run_accuracy, run_persona_table, run_sweep, sweep_grid,
        )

        names = tuple(models) if models else BASELINE_NAMES
        config = AccuracyBenchConfig.quick(names) if quick else AccuracyBenchConfig(models=names)
        config = replace(
            config,
            seeds=tuple(range(seeds)) if seeds is not None else config.seeds,
            budget=budget if budget is not None else config.budget,
            overrides=overrides or {},
        )
        if sweep:
            return run_sweep(dataset, config, sweep_grid((1, 2), (8,), (1.0, 3.0)) if quick else None)
        if len(names) == 1 and names[0] in PERSONA_TABLES:  # issue 11's tables: --models diversity-quintiles ...
            return run_persona_table(names[0], dataset, config, quick=quick)
        return run_accuracy(dataset, config)
    if suite == "retrieval":
        from recsys_pref.bench.retrieval import RetrievalBenchConfig, run_retrieval

        return run_retrieval(dataset, RetrievalBenchConfig.quick() if quick else RetrievalBenchConfig())
    if suite == "scale":
        if models == ["serving-memory"]:  # fit + serving state + recommend, peak memory per size
            from recsys_pref.bench.serving_memory import run_serving_memory

            return run_serving_memory(dataset.name, quick=quick)
        if models == ["batch"]:  # issue 14: batch fold-in and recommend at 10^4..10^7 users (bench.scale)
            from recsys_pref.bench.scale import batch_scale_configs, run_batch_scale

            return run_batch_scale(*batch_scale_configs(quick, overrides or {}))
        from recsys_pref.bench.scale import ScaleBenchConfig, run_scale

        return run_scale(dataset, ScaleBenchConfig.quick() if quick else ScaleBenchConfig())
    if suite == "explanations":
        from recsys_pref.bench.explanations import ExplanationsBenchConfig, run_explanations

        config = ExplanationsBenchConfig.quick() if quick else ExplanationsBenchConfig()
        if overrides:  # --set KEY=VALUE reaches every model fitted here
            config = replace(config, params=config.params | overrides)
        if models:
            config = replace(config, models=tuple(models))
        if seeds is not None:
            config = replace(config, seeds=tuple(range(seeds)))
        return run_explanations(dataset, config)
    if suite == "safeguards":
        from recsys_pref.bench.safeguards import (
            SafeguardsBenchConfig, run_safeguards, run_safeguards_sweep, sweep_variants,
        )

        config = (SafeguardsBenchConfig.quick() if quick else SafeguardsBenchConfig()).with_overrides(overrides or {})
        if models:
            config = replace(config, settings=tuple(models))
        if seeds is not None:
            config = replace(config, seeds=tuple(range(seeds)))
        if sweep:
            return run_safeguards_sweep(dataset, config, sweep_variants((0.1,), candidates=(30,)) if quick
                                        else None)
        return run_safeguards(dataset, config)
    if suite == "onboarding":
        from recsys_pref.bench.onboarding import OnboardingBenchConfig, run_onboarding

        onboarding = OnboardingBenchConfig.quick() if quick else OnboardingBenchConfig()
        if seeds is not None:
            onboarding = replace(onboarding, seeds=tuple(range(seeds)))
        return run_onboarding(dataset, onboarding)
    if suite == "carriers":
        from recsys_pref.bench.carriers import CarriersBenchConfig, run_carriers

        carriers = CarriersBenchConfig.quick() if quick else CarriersBenchConfig()
        if seeds is not None:
            carriers = replace(carriers, seeds=tuple(range(seeds)))
        return run_carriers(dataset, carriers)
    if suite == "serve":
        from recsys_pref.bench.serve import ServeBenchConfig, run_serve

        return run_serve(dataset, ServeBenchConfig.quick() if quick else ServeBenchConfig())
    if suite == "amortization":  # issue 14: shared side + cheap users against a model per user
        from recsys_pref.bench.amortization import AmortizationConfig, run_amortization

        amortization = AmortizationConfig.quick() if quick else AmortizationConfig()
        sizes = {key: value for key, value in (overrides or {}).items() if key in ("model_users", "onboarding_users")}
        return run_amortization(dataset, replace(amortization, **sizes))
    raise NotImplementedError(f"bench suite {suite!r} is not available yet in this version")
