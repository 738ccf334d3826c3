"""RECSYS_PREF_REQUIRE_DATA=1 (set by .ci/run) turns a skip for missing real data into a
failure (the hook in tests/conftest.py); other skips stay skips."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from recsys_pref.data.paths import DATA_ENV

TESTS = Path(__file__).resolve().parent

SKIPPING = '''
import pytest

def test_needs_a_dataset():
    pytest.skip("ml-100k is not available: /nowhere lacks u.data (set RECSYS_PREF_DATA)")

def test_skips_for_another_reason():
    pytest.skip("not on this platform")
'''


def run_with_the_conftest(tmp_path: Path, require: str | None) -> str:
    """pytest on a file of skipping tests, with tests/conftest.py loaded as a plugin."""
    (tmp_path / "test_skipping.py").write_text(SKIPPING, encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if key != "RECSYS_PREF_REQUIRE_DATA"}
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # hypothesis, anyio, ...: not needed here, slow to load
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
    if require is not None:
        env["RECSYS_PREF_REQUIRE_DATA"] = require
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "conftest", "-p", "no:cacheprovider",
                             str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    return result.stdout


def test_without_the_switch_a_missing_dataset_is_a_skip(tmp_path: Path) -> None:
    assert "2 skipped" in run_with_the_conftest(tmp_path, None)


def test_with_the_switch_a_missing_dataset_fails_and_other_skips_stay(tmp_path: Path) -> None:
    output = run_with_the_conftest(tmp_path, "1")
    assert "1 failed, 1 skipped" in output
    assert "RECSYS_PREF_REQUIRE_DATA=1 makes a skip for missing real data a failure" in output


def test_the_hook_looks_for_the_loaders_data_variable() -> None:
    import conftest  # tests/ is on sys.path under pytest's default import mode

    assert conftest.DATA_ENV == DATA_ENV
