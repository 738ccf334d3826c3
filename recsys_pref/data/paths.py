"""Where dataset files live: directory search order, and download-with-checksum.

A named dataset lives in `<root>/<name>/`. Roots are searched in this order:

1. the `data_dir` argument (the CLI's `--data-dir`),
2. the environment variable RECSYS_PREF_DATA,
3. the copy bundled with the package (the top-level datasets/ folder, installed as the
   package data `recsys_pref.datasets`; only ml-latest-small),
4. the user cache (`$XDG_CACHE_HOME/recsys_pref`, default `~/.cache/recsys_pref`).

A directory counts as present when all of the dataset's required files exist in it. When
no root has them, the MovieLens archives are downloaded from GroupLens into the user cache
and checked against their published sha256 (never when RECSYS_PREF_OFFLINE=1; gowalla has
no checksummed archive and is never downloaded). Failing that, `DatasetNotFoundError` says
which files are needed, where they were looked for and where to put them.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

DATA_ENV = "RECSYS_PREF_DATA"
OFFLINE_ENV = "RECSYS_PREF_OFFLINE"
BUNDLED_DIR = Path(str(files("recsys_pref.datasets")))  # a real directory in editable and wheel installs
DOWNLOAD_TIMEOUT_S = 10.0

REQUIRED_FILES: dict[str, tuple[str, ...]] = {
    "ml-100k": ("u.data", "u.item", "u.genre"),
    "ml-latest-small": ("ratings.csv", "movies.csv", "tags.csv"),
    "ml-1m": ("ratings.dat", "movies.dat"),
    "gowalla": ("train.txt", "test.txt"),
}

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Archive:
    """A publisher's zip archive: where to get it and its sha256. The zip holds `<name>/...`."""

    url: str
    sha256: str


ARCHIVES: dict[str, Archive] = {
    "ml-100k": Archive(
        "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
    ),
    "ml-latest-small": Archive(
        "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip",
        "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
    ),
    "ml-1m": Archive(
        "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
    ),
}


class DatasetNotFoundError(FileNotFoundError, ValueError):
    """A dataset or data file is not available. Also a ValueError, so callers that catch
    bad-input errors of the loaders catch this one too."""


def user_cache_dir() -> Path:
    """The per-user cache root, where downloads go."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "recsys_pref"


def search_roots(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The root directories searched for `<root>/<name>/`, in order, without repeats."""
    candidates = [data_dir, os.environ.get(DATA_ENV) or None, BUNDLED_DIR, user_cache_dir()]
    roots: list[Path] = []
    for candidate in candidates:
        if candidate is not None:
            root = Path(candidate).expanduser()
            if root not in roots:
                roots.append(root)
    return roots


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The root a user should put datasets in: `data_dir`, else RECSYS_PREF_DATA, else the cache."""
    chosen = data_dir or os.environ.get(DATA_ENV) or user_cache_dir()
    return Path(chosen).expanduser()


def missing_files(directory: Path, name: str) -> list[str]:
    """The required files of dataset `name` that `directory` lacks (all of them if it is absent)."""
    return [file for file in REQUIRED_FILES[name] if not (directory / file).is_file()]


def find_dataset_dir(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The directory holding dataset `name`'s required files.

    Searches `search_roots(data_dir)`; when none has them, tries the publisher's archive
    (MovieLens only, never with RECSYS_PREF_OFFLINE=1). Raises
    DatasetNotFoundError naming the files, the directories searched and where to put them.
    """
    if name not in REQUIRED_FILES:
        raise ValueError(f"no data files are known for {name!r}; known: {', '.join(REQUIRED_FILES)}")
    roots = search_roots(data_dir)
    for root in roots:
        if not missing_files(root / name, name):
            return root / name
    download_note = _download_note(name)
    if download_note is None:
        try:
            return download_dataset(name, user_cache_dir())
        except (OSError, ValueError) as error:  # URLError and timeouts are OSErrors
            download_note = f"download from {ARCHIVES[name].url} failed: {error}"
    raise DatasetNotFoundError(_not_found_message(name, roots, resolve_data_dir(data_dir), download_note))


def _download_note(name: str) -> str | None:
    """Why no download is attempted, or None when one should be."""
    if name not in ARCHIVES:
        return f"{name} has no checksummed publisher archive, so it is never downloaded"
    if os.environ.get(OFFLINE_ENV) == "1":
        return f"no download attempted because {OFFLINE_ENV}=1"
    return None


def _not_found_message(name: str, roots: list[Path], target: Path, download_note: str) -> str:
    """What is needed, where it was looked for (and what each place lacks), where to put it."""
    searched = []
    for root in roots:
        directory = root / name
        state = "absent" if not directory.is_dir() else "missing " + ", ".join(missing_files(directory, name))
        searched.append(f"  {directory} ({state})")
    source = (
        f" They are in the publisher's archive {ARCHIVES[name].url} (sha256 {ARCHIVES[name].sha256})."
        if name in ARCHIVES
        else ""
    )
    return (
        f"dataset {name!r} not found: it needs {', '.join(REQUIRED_FILES[name])}.\n"
        f"Searched:\n" + "\n".join(searched) + "\n"
        f"{download_note}.\n"
        f"Put the files in {target / name}/ (or pass data_dir=..., --data-dir, or set {DATA_ENV} "
        f"to a directory holding {name}/).{source}"
    )


def download_dataset(name: str, root: Path) -> Path:
    """Download `name`'s archive into `root`, check its sha256 and unpack it to `root/name`.

    Both steps are atomic: the zip is written to a temporary file and renamed only once its
    checksum matches (a mismatch deletes it and raises ValueError); it is unpacked into a
    temporary directory whose files are renamed into place (files already in `root/name`
    are kept).
    """
    archive = ARCHIVES[name]
    root.mkdir(parents=True, exist_ok=True)
    zip_path = root / f"{name}.zip"
    if not zip_path.is_file():
        _log.info("downloading %s from %s", name, archive.url)
        _fetch_verified(archive, zip_path)
    return _unpack(zip_path, root, name)


def _fetch_verified(archive: Archive, destination: Path) -> None:
    """Download `archive` to `destination` via a temporary file, renamed only if the sha256 matches."""
    handle, temp_name = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".part")
    temp_path = Path(temp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(handle, "wb") as out:
            with urllib.request.urlopen(archive.url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
        if digest.hexdigest() != archive.sha256:
            raise ValueError(
                f"checksum mismatch for {archive.url}: sha256 {digest.hexdigest()}, expected "
                f"{archive.sha256}; the downloaded file was deleted"
            )
        temp_path.replace(destination)
    finally:
        temp_path.unlink(missing_ok=True)


def _unpack(zip_path: Path, root: Path, name: str) -> Path:
    """Extract `name/` of the zip into a staging directory, then move its files into `root/name`."""
    target = root / name
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}."))
    try:
        with zipfile.ZipFile(zip_path) as archive:
            for member in archive.namelist():
                if Path(member).is_absolute() or ".." in Path(member).parts:
                    raise ValueError(f"{zip_path} has an unsafe member path {member!r}")
            archive.extractall(staging)
        unpacked = staging / name
        lacking = missing_files(unpacked, name)
        if lacking:
            raise ValueError(f"{zip_path} does not contain {name}/{', '.join(lacking)}")
        if not target.exists():
            unpacked.replace(target)
        else:  # keep what a user already put there; add only what is missing
            for file in missing_files(target, name):
                (unpacked / file).replace(target / file)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
