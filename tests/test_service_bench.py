"""`bench serve --quick`: a bounded load on the real server, persona and ALS, every route."""
from __future__ import annotations

import pytest

from recsys_pref.bench.serve import ROUTES, ServeBenchConfig, run_serve


@pytest.mark.integration
def test_bench_serve_loads_every_route_without_errors(dataset):
    config = ServeBenchConfig.quick()
    result = run_serve(dataset, config, progress=False)
    routes = [(row["engine"], row["route"]) for row in result.rows]
    assert routes == [("persona", route) for route in ROUTES] + [("als", "user")]
    assert all(row["requests"] == config.requests and row["errors"] == 0 for row in result.rows)
    persona, als = result.rows[1], result.rows[-1]
    assert persona["state_bytes"] == 4 * config.n_personas * (config.n_bases + 1) and als["state_bytes"] == 4 * config.n_bases
    assert persona["row_bytes"] > persona["state_bytes"] and persona["p50_ms"] <= persona["p99_ms"]
