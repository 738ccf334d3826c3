"""The wheel carries the conf/ presets and the bundled dataset: built from a copy of the source,
installed into a fresh virtual environment outside the source tree, it loads the `persona`
preset and the bundled ml-latest-small and fits a tiny model.

Offline and fast: the wheel is built without build isolation and installed without
dependencies; the fresh environment sees the running environment's packages through a .pth
line (appended after its own site-packages, so `recsys_pref` comes from the wheel).
"""
from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SOURCE = Path(__file__).resolve().parents[1]
SOURCE_ITEMS = ("recsys_pref", "conf", "datasets", "setup.py", "pyproject.toml", "README.md")

#: Run in the fresh environment: everything it uses must come from the installed wheel.
INSTALLED_CHECK = """
import recsys_pref
from pathlib import Path
from recsys_pref.config import CONF_DIR, load_model_config
from recsys_pref.data import load_dataset
from recsys_pref.data.paths import BUNDLED_DIR, find_dataset_dir
from recsys_pref.models import make_model

installed = Path(recsys_pref.__file__).parent
assert "site-packages" in installed.parts, installed
for folder in (CONF_DIR, BUNDLED_DIR):
    assert folder.parent == installed, folder
name, params = load_model_config("persona")
assert name == "persona" and params, params
assert find_dataset_dir("ml-latest-small").parent == BUNDLED_DIR
dataset = load_dataset("ml-latest-small")
tiny = dict(params, n_bases=4, embedding_dim=4, hidden_dim=16, max_epochs=1, validation_share=0.0, progress=False)
model = make_model(name, **tiny).fit(dataset.to_csr()[:100])
assert model.score(dataset.to_csr()[:3]).shape == (3, dataset.n_items)
print("installed wheel ok:", installed)
"""


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the working tree (the tree itself gets no build/ folder)."""
    source = tmp_path_factory.mktemp("source")
    for item in SOURCE_ITEMS:
        if (SOURCE / item).is_dir():
            shutil.copytree(SOURCE / item, source / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(SOURCE / item, source / item)
    out = tmp_path_factory.mktemp("wheel")
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(out),
         str(source)], cwd=out)
    (built,) = out.glob("recsys_pref-*.whl")
    return built


def test_the_wheel_contains_the_presets_and_the_bundled_dataset(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    presets = {path.name for path in (SOURCE / "conf").glob("*.yaml")}
    data = {path.name for path in (SOURCE / "datasets" / "ml-latest-small").iterdir()}
    assert {f"recsys_pref/conf/{name}" for name in presets} <= names
    assert {f"recsys_pref/datasets/ml-latest-small/{name}" for name in data} <= names
    assert "recsys_pref/datasets/NOTICE.md" in names


def test_the_installed_wheel_loads_the_persona_preset_and_bundled_data_and_fits(
    wheel: Path, tmp_path: Path
) -> None:
    environment = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(environment)], cwd=tmp_path)
    python = environment / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", str(wheel)],
        cwd=tmp_path)
    (target,) = (environment / "lib").glob("python*/site-packages")
    (target / "zz_running_environment.pth").write_text("\n".join(site.getsitepackages()) + "\n", encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "RECSYS_PREF_DATA")}
    env |= {"RECSYS_PREF_OFFLINE": "1", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    output = run([str(python), "-I", "-c", INSTALLED_CHECK], cwd=tmp_path, env=env)
    assert "installed wheel ok" in output and str(SOURCE) not in output
