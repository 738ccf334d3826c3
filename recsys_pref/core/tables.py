"""Rows of metrics as a Markdown table (the bench's .md files, the demo's and evaluate's output)."""
from __future__ import annotations

import math
from typing import Any


def _format(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if abs(value) < 1e-12:
            return "0"
        if value != 0 and (abs(value) >= 1000 or abs(value) < 0.001):
            return f"{value:.3g}"
        return f"{value:.4f}"
    if isinstance(value, dict):
        return ", ".join(f"{key}={item:g}" if isinstance(item, float) else f"{key}={item}" for key, item in value.items())
    return str(value)


def markdown_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """Rows as a Markdown table; columns default to every key, in first-seen order.
    A metric with a matching "<name>_std" key is shown as "mean ± std"."""
    if not rows:
        return "_no rows_\n"
    if columns is None:
        columns = []
        for row in rows:
            columns += [key for key in row if key not in columns and not key.endswith("_std")]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for column in columns:
            cell = _format(row.get(column, ""))
            if f"{column}_std" in row:
                cell += f" ± {_format(row[f'{column}_std'])}"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
