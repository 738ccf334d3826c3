"""The result-file contract of `recsys-pref bench`: DIR/SUITE.json and DIR/SUITE.md.

The JSON holds suite, dataset, protocol, config and rows (one object per model or setting,
metric names as keys exactly as "ndcg@10", "recall@20", "fit_s"). The Markdown file is the
same rows as a table, headed by the command that produced it, ready for BENCHMARKS.md.
"""
from __future__ import annotations

import json
import math
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recsys_pref.core.files import atomic_write_text
from recsys_pref.core.tables import markdown_table

SUITES = ("accuracy", "onboarding", "retrieval", "explanations", "safeguards", "scale", "serve", "carriers",
          "amortization")


@dataclass
class BenchResult:
    suite: str
    dataset: str
    protocol: str
    config: dict[str, Any]
    rows: list[dict[str, Any]]
    columns: list[str] | None = None  # the Markdown table's columns (default: every key)
    command: str = field(default_factory=lambda: "recsys-pref " + shlex.join(sys.argv[1:]))

    def to_json(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "dataset": self.dataset,
            "protocol": self.protocol,
            "config": _plain(self.config),
            "command": self.command,
            "rows": _plain(self.rows),
        }


def _plain(value: Any) -> Any:
    """Python scalars, lists and dicts only; NaN and infinities (not valid JSON) become null."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return _plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_result(result: BenchResult, out_dir: Path) -> tuple[Path, Path]:
    """Write DIR/SUITE.json and DIR/SUITE.md atomically; returns both paths."""
    if result.suite not in SUITES:
        raise ValueError(f"unknown suite {result.suite!r}; expected one of {', '.join(SUITES)}")
    out_dir = Path(out_dir)
    json_path, md_path = out_dir / f"{result.suite}.json", out_dir / f"{result.suite}.md"
    atomic_write_text(json_path, json.dumps(result.to_json(), indent=2, allow_nan=False) + "\n")
    heading = f"### {result.suite} — {result.dataset} ({result.protocol})\n\n`{result.command}`\n\n"
    atomic_write_text(md_path, heading + markdown_table(result.rows, result.columns))
    return json_path, md_path
