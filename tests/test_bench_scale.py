"""`recsys-pref bench scale`: training throughput per device, measured over a time box."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from recsys_pref.bench.scale import users_processed
from recsys_pref.cli import main


def test_users_processed_counts_the_short_last_batch_of_each_epoch() -> None:
    # 10 users in batches of 4: an epoch is 4 + 4 + 2 users in 3 steps
    assert users_processed(steps=3, n_users=10, batch_size=4) == 10
    assert users_processed(steps=5, n_users=10, batch_size=4) == 18
    assert users_processed(steps=0, n_users=10, batch_size=4) == 0


@pytest.mark.integration
def test_quick_scale_bench_reports_cpu_throughput(tmp_path: Path) -> None:
    code = main(["bench", "scale", "--dataset", "synthetic", "--synthetic", "n_users=300", "--synthetic", "n_items=100",
                 "--out", str(tmp_path), "--quick"])
    assert code == 0
    rows = json.loads((tmp_path / "scale.json").read_text())["rows"]
    cpu = rows[0]
    assert cpu["device"].startswith("cpu") and cpu["users"] == 300 and cpu["items"] == 100
    assert cpu["steps"] >= 1 and cpu["users_per_s"] > 0
    assert cpu["train_s"] < 30  # the two-second time box stopped training
