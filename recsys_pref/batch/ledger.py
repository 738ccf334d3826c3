"""Which chunks a batch job has finished, so a rerun skips them.

The ledger is one JSON file in the job's work directory: the job's identity (the input's
fingerprint, the model's hash, the output and every setting that changes a chunk's result),
the chunk plan, and a report per finished chunk. It is rewritten atomically after every
finished chunk. A chunk's own output is atomic too (a Parquet part renamed into place, or one
store transaction), so after any interruption each chunk is either finished and recorded, or
has left nothing behind; a chunk whose output was committed just before an interruption, but
not yet recorded, is recomputed by the rerun and written again, identically.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recsys_pref.core.files import atomic_write_text

LEDGER_FILE = "_ledger.json"  # "_" first: Parquet readers of the directory skip it


class LedgerMismatch(ValueError):
    """The work directory holds a ledger of another job (other input, model or settings)."""


@dataclass
class ChunkLedger:
    """identity: what the job is; plan: one summary per chunk (index first); done: chunk
    index -> that chunk's report."""

    path: Path
    identity: dict[str, Any]
    plan: list[dict[str, Any]]
    done: dict[int, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def open(cls, work_dir: Path, identity: dict[str, Any], plan: list[dict[str, Any]]) -> "ChunkLedger":
        """The ledger in `work_dir`: a new one, or the one a previous run of the SAME job left
        (its finished chunks kept); LedgerMismatch for another job's."""
        path = Path(work_dir) / LEDGER_FILE
        ledger = cls(path, identity, plan)
        if path.is_file():
            stored = json.loads(path.read_text(encoding="utf-8"))
            for name, mine, theirs in (("job", identity, stored.get("identity")), ("chunk plan", plan, stored.get("plan"))):
                if mine != theirs:
                    raise LedgerMismatch(
                        f"{path} belongs to another job (its {name} differs: the input, model, output or settings "
                        f"changed since it was written); delete {path.parent} to start over, or use another work "
                        "directory")
            ledger.done = {int(index): report for index, report in stored.get("done", {}).items()}
        else:
            ledger._save()
        return ledger

    def pending(self) -> list[int]:
        """Indices of the chunks not finished yet, in order."""
        return [chunk["index"] for chunk in self.plan if chunk["index"] not in self.done]

    def finish(self, index: int, report: dict[str, Any]) -> None:
        """Record chunk `index` as finished with `report` (atomic rewrite)."""
        self.done[index] = report
        self._save()

    def totals(self) -> dict[str, int]:
        """Each numeric report field summed over the finished chunks."""
        totals: dict[str, int] = {}
        for report in self.done.values():
            for name, value in report.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    totals[name] = totals.get(name, 0) + value
        return totals

    def _save(self) -> None:
        atomic_write_text(self.path, json.dumps({"identity": self.identity, "plan": self.plan,
                                                 "done": {str(index): report for index, report in self.done.items()}},
                                                indent=1) + "\n")
