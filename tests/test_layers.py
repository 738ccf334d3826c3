"""Layers import only downward: the import-linter contracts in pyproject.toml hold.

Contracts (pyproject.toml, [tool.importlinter]): core -> data -> models -> config -> retrieval,
explain, safeguards, onboarding, evaluation -> pipeline -> bench, demo, terminal -> cli;
retrieval, explain and evaluation independent of each other; onboarding and safeguards
independent of each other.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1]


def test_every_import_linter_contract_is_kept() -> None:
    command = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert command, "lint-imports is not installed: pip install -e '.[dev]'"
    result = subprocess.run([command, "--no-cache", "--no-logo"], cwd=SOURCE, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, f"import contracts broken:\n{result.stdout}\n{result.stderr}"
