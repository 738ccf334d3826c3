"""Benchmark suites behind `recsys-pref bench SUITE`."""
from __future__ import annotations

from recsys_pref.bench.results import BenchResult
from recsys_pref.data.dataset import InteractionDataset


def run_suite(
    suite: str,
    dataset: InteractionDataset,
    *,
    quick: bool = False,
    models: list[str] | None = None,
    seeds: int | None = None,
) -> BenchResult:
    """Run benchmark `suite` on `dataset`; `quick` is the reduced run used by tests."""
    if suite == "accuracy":
        from recsys_pref.bench.accuracy import BASELINE_NAMES, AccuracyBenchConfig, run_accuracy

        names = tuple(models) if models else BASELINE_NAMES
        config = AccuracyBenchConfig.quick(names) if quick else AccuracyBenchConfig(models=names)
        if seeds is not None:
            config = AccuracyBenchConfig(config.models, tuple(range(seeds)), config.budget)
        return run_accuracy(dataset, config)
    raise NotImplementedError(f"bench suite {suite!r} is not available yet in this version")
