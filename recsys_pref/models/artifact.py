"""One model artifact directory: arrays in safetensors (no pickle), JSON metadata, a hash.

Layout of DIR:
    arrays.safetensors   every array (weights, id maps as strings are JSON, not arrays)
    meta.json            kind, config, library version, id maps, anything JSON-serialisable
    other files          optional opaque files named by the writer (a FAISS index, ...)
    MANIFEST.json        sha256 of each file above: `load_artifact` refuses a mismatch

`save_artifact` writes into a fresh temporary sibling directory and swaps it in with
renames, so an interrupted save leaves the previous artifact intact. Those siblings are named
`.DIR.saving-PID-*` and `.DIR.old-PID-*`; a save that was killed leaves one behind (a whole
model's size), so the next save of DIR removes those of processes that no longer run, and
puts a retired previous artifact back first when the kill came between the two renames.

Sparse matrices are stored as their three CSR arrays (`csr_arrays`, `csr_from_arrays`).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from recsys_pref.core.version import __version__

ARRAYS_FILE = "arrays.safetensors"
META_FILE = "meta.json"
MANIFEST_FILE = "MANIFEST.json"
FORMAT_VERSION = 1


class ArtifactError(ValueError):
    """A model artifact is missing, corrupted, or does not match what is asked of it."""


@dataclass(frozen=True)
class Artifact:
    kind: str  # which model class wrote it
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]
    library_version: str
    files: dict[str, bytes] = field(default_factory=dict)  # the optional opaque files, by name


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_artifact(
    directory: Path, kind: str, arrays: dict[str, np.ndarray], meta: dict[str, Any], files: dict[str, bytes] | None = None
) -> Path:
    """Atomically write (or replace) the artifact at `directory`; `files` are extra opaque files
    (plain names such as "index.faiss"), hashed in the manifest like the others."""
    files = files or {}
    bad = [name for name in files if name in (ARRAYS_FILE, META_FILE, MANIFEST_FILE) or Path(name).name != name
           or name.startswith(".")]
    if bad:
        raise ValueError(f"artifact file names must be plain and not reserved, got {bad}")
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    _clean_up_killed_saves(directory)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=_sibling_prefix(directory, "saving")))
    try:
        save_file({name: np.ascontiguousarray(value) for name, value in arrays.items()}, str(staging / ARRAYS_FILE))
        document = {"format_version": FORMAT_VERSION, "kind": kind, "library_version": __version__, "meta": meta}
        (staging / META_FILE).write_text(json.dumps(document, indent=2, default=_to_json), encoding="utf-8")
        for name, data in files.items():
            (staging / name).write_bytes(data)
        manifest = {name: _sha256(staging / name) for name in (ARRAYS_FILE, META_FILE, *files)}
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        _swap_in(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def _swap_in(staging: Path, directory: Path) -> None:
    """Replace `directory` by `staging`; the old one is removed only after the new one is in place."""
    if not directory.exists():
        os.replace(staging, directory)
        return
    if not (directory / MANIFEST_FILE).exists():
        raise ArtifactError(f"{directory} exists and is not a model artifact; refusing to overwrite it")
    retired = Path(tempfile.mkdtemp(dir=directory.parent, prefix=_sibling_prefix(directory, "old"))) / directory.name
    os.replace(directory, retired)
    try:
        os.replace(staging, directory)
    except BaseException:
        os.replace(retired, directory)
        raise
    finally:
        shutil.rmtree(retired.parent, ignore_errors=True)


def _sibling_prefix(directory: Path, role: str) -> str:
    """Name prefix of this process's temporary siblings of `directory` ("saving" or "old")."""
    return f".{directory.name}.{role}-{os.getpid()}-"


def _clean_up_killed_saves(directory: Path) -> None:
    """Remove the temporary siblings that killed saves of `directory` left behind.

    Only siblings of processes that no longer run are touched (a concurrent save's are not).
    When `directory` itself is missing, a killed save stopped between the two renames of the
    swap: its retired previous artifact is moved back into place before the rest is removed.
    """
    for role in ("old", "saving"):  # restore a retired artifact before anything is deleted
        for sibling in sorted(directory.parent.glob(f".{directory.name}.{role}-*")):
            if _owner_is_running(sibling.name.removeprefix(f".{directory.name}.{role}-")):
                continue
            retired = sibling / directory.name
            if role == "old" and not directory.exists() and (retired / MANIFEST_FILE).is_file():
                os.replace(retired, directory)
            shutil.rmtree(sibling, ignore_errors=True)


def _owner_is_running(suffix: str) -> bool:
    """Whether the process whose id starts `suffix` ("PID-random") still runs."""
    pid_text = suffix.split("-", 1)[0]
    if not pid_text.isdigit():
        return False  # written before siblings carried a process id
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    return True


def load_artifact(directory: Path, expected_kind: str | None = None) -> Artifact:
    """Read and verify an artifact; raises ArtifactError naming what is missing or wrong."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ArtifactError(f"no model artifact at {directory} (not a directory)")
    missing = [name for name in (ARRAYS_FILE, META_FILE, MANIFEST_FILE) if not (directory / name).is_file()]
    if missing:
        raise ArtifactError(f"model artifact {directory} is incomplete: missing {', '.join(missing)}")
    manifest = _json_object(directory / MANIFEST_FILE)
    if not all(isinstance(value, str) for value in manifest.values()):
        raise ArtifactError(f"{directory / MANIFEST_FILE} must map file names to sha256 strings")
    extra = [name for name in manifest if name not in (ARRAYS_FILE, META_FILE)]
    for name in (ARRAYS_FILE, META_FILE, *extra):
        if not (directory / name).is_file() or Path(name).name != name:
            raise ArtifactError(f"model artifact {directory} is incomplete: missing {name} (listed in {MANIFEST_FILE})")
        if manifest.get(name) != _sha256(directory / name):
            raise ArtifactError(f"model artifact {directory} is corrupted: {name} does not match its hash in {MANIFEST_FILE}")
    document = _json_object(directory / META_FILE)
    stored_format = document.get("format_version")
    if stored_format != FORMAT_VERSION:
        newer = isinstance(stored_format, int) and stored_format > FORMAT_VERSION
        raise ArtifactError(
            f"artifact at {directory} has format {stored_format}, written by recsys_pref "
            f"{document.get('library_version')}; this recsys_pref {__version__} reads format {FORMAT_VERSION}"
            + ("; upgrade recsys_pref to load it" if newer else "")
        )
    if expected_kind is not None and document.get("kind") != expected_kind:
        raise ArtifactError(f"artifact at {directory} holds a {document.get('kind')!r} model, not {expected_kind!r}")
    for key, expected in (("kind", str), ("library_version", str), ("meta", dict)):
        if not isinstance(document.get(key), expected):
            raise ArtifactError(f"{directory / META_FILE}: {key!r} must be a JSON {expected.__name__}, "
                                f"got {type(document.get(key)).__name__}")
    try:
        arrays = load_file(str(directory / ARRAYS_FILE))
    except SafetensorError as error:
        raise ArtifactError(f"cannot read {directory / ARRAYS_FILE}: {error}") from error
    files = {name: (directory / name).read_bytes() for name in extra}
    return Artifact(document["kind"], arrays, document["meta"], document["library_version"], files)


def _json_object(path: Path) -> dict[str, Any]:
    """The JSON object in `path`; ArtifactError when it is not valid JSON or not an object."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ArtifactError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(document, dict):
        raise ArtifactError(f"{path} must hold a JSON object, got {type(document).__name__}")
    return document


def csr_arrays(name: str, matrix: sp.csr_matrix) -> dict[str, np.ndarray]:
    """The CSR arrays of `matrix` as artifact arrays NAME.data, NAME.indices, NAME.indptr."""
    matrix = sp.csr_matrix(matrix)
    return {f"{name}.data": matrix.data, f"{name}.indices": matrix.indices.astype(np.int64),
            f"{name}.indptr": matrix.indptr.astype(np.int64)}


def csr_from_arrays(arrays: dict[str, np.ndarray], name: str, shape: tuple[int, int]) -> sp.csr_matrix:
    """The (shape) CSR matrix that `csr_arrays(name, ...)` stored (scipy checks the arrays' lengths)."""
    return sp.csr_matrix((arrays[f"{name}.data"], arrays[f"{name}.indices"], arrays[f"{name}.indptr"]), shape=shape)


def _to_json(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in an artifact's metadata")
