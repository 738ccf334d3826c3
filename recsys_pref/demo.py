"""`recsys-pref demo`: the main job end to end on the bundled ml-latest-small.

Fits every model on a strong-generalization split (held-out users folded in from 80% of their
positives), evaluates on the other 20%, and prints the table. Models use their documented
default configurations (no tuning: `recsys-pref bench accuracy` does the tuned comparison).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from recsys_pref.bench.results import markdown_table
from recsys_pref.data import SplitConfig, load_dataset, make_split
from recsys_pref.evaluation.evaluate import evaluate
from recsys_pref.evaluation.tuning import build_model

DEMO_DATASET = "ml-latest-small"
DEMO_MODELS = ("popularity", "itemknn", "als", "bpr", "ease")
TABLE_COLUMNS = ["model", "ndcg@10", "ndcg@100", "recall@20", "recall@50", "coverage@10", "fit_s"]


def run_demo(data_dir: Path | None = None, quick: bool = False, seed: int = 0) -> list[dict]:
    """Fit, evaluate and print; returns the table rows."""
    dataset = load_dataset(DEMO_DATASET, data_dir=data_dir)
    print(dataset.summary())
    split = make_split(dataset, SplitConfig(seed=seed))
    print(f"strong generalization, seed {seed}: {len(split.test)} test users, {int(split.catalog.sum())} items ranked")
    popularity = np.asarray(split.train.sum(axis=0)).ravel()
    rows = []
    for name in tqdm(DEMO_MODELS, desc="fitting models"):
        model = build_model(name, {}, seed)
        started = time.perf_counter()
        model.fit(split.train)
        fit_s = time.perf_counter() - started
        result = evaluate(model, split.test, catalog=split.catalog, item_popularity=popularity)
        rows.append({"model": name} | result.metrics | {"fit_s": fit_s})
    print()
    print(markdown_table(rows, TABLE_COLUMNS))
    return rows
