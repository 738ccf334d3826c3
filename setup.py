"""Packaging beyond pyproject.toml: the top-level conf/ and datasets/ folders ship inside the
package as `recsys_pref.conf` and `recsys_pref.datasets` (found at run time through
importlib.resources), next to every `recsys_pref*` package of the source tree."""
from setuptools import find_packages, setup

BUNDLED = {"recsys_pref.conf": "conf", "recsys_pref.datasets": "datasets"}

setup(packages=find_packages(include=["recsys_pref", "recsys_pref.*"]) + list(BUNDLED), package_dir=BUNDLED)
