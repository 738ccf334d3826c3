"""The fold-in rows of `recsys-pref bench scale` (issue 11): persona's exact inference beside
implicit's recalculate_user on the same histories."""
from __future__ import annotations

from recsys_pref.bench.scale import ScaleBenchConfig, best_seconds, measure_fold_in
from recsys_pref.data import make_synthetic


def test_best_seconds_takes_the_fastest_timed_pass_after_a_warm_up() -> None:
    calls = []
    seconds = best_seconds(lambda: calls.append(1), repeats=3)
    assert len(calls) == 4 and 0 <= seconds < 1


def test_fold_in_rows_compare_persona_and_implicit_on_the_same_users() -> None:
    dataset = make_synthetic(n_users=120, n_items=60, seed=0)
    config = ScaleBenchConfig(fold_in_personas=2, fold_in_bases=8, fold_in_users=100, fold_in_repeats=1)
    persona, implicit = measure_fold_in(dataset, config)
    assert persona["model"].startswith("persona exact (M=2, K=8)") and implicit["model"].startswith("implicit")
    assert persona["users"] == implicit["users"] == 100 and persona["positives"] == implicit["positives"]
    assert persona["state_bytes"] == 2 * (8 + 1) * 4 and implicit["state_bytes"] == 8 * 4
    assert persona["fold_in_users_per_s"] > 0 and implicit["fold_in_users_per_s"] > 0
