"""One model artifact directory: arrays in safetensors (no pickle), JSON metadata, a hash.

Layout of DIR:
    arrays.safetensors   every array (weights, id maps as strings are JSON, not arrays)
    meta.json            kind, config, library version, id maps, anything JSON-serialisable
    other files          optional opaque files named by the writer (a FAISS index, ...)
    MANIFEST.json        sha256 of each file above: `load_artifact` refuses a mismatch

`save_artifact` writes into a fresh temporary sibling directory and swaps it in with
renames, so an interrupted save leaves the previous artifact intact.
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
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.saving-"))
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
    retired = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.old-")) / directory.name
    os.replace(directory, retired)
    try:
        os.replace(staging, directory)
    except BaseException:
        os.replace(retired, directory)
        raise
    finally:
        shutil.rmtree(retired.parent, ignore_errors=True)


def load_artifact(directory: Path, expected_kind: str | None = None) -> Artifact:
    """Read and verify an artifact; raises ArtifactError naming what is missing or wrong."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ArtifactError(f"no model artifact at {directory} (not a directory)")
    missing = [name for name in (ARRAYS_FILE, META_FILE, MANIFEST_FILE) if not (directory / name).is_file()]
    if missing:
        raise ArtifactError(f"model artifact {directory} is incomplete: missing {', '.join(missing)}")
    try:
        manifest = json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ArtifactError(f"{directory / MANIFEST_FILE} is not valid JSON: {error}") from error
    extra = [name for name in manifest if name not in (ARRAYS_FILE, META_FILE)]
    for name in (ARRAYS_FILE, META_FILE, *extra):
        if not (directory / name).is_file() or Path(name).name != name:
            raise ArtifactError(f"model artifact {directory} is incomplete: missing {name} (listed in {MANIFEST_FILE})")
        if manifest.get(name) != _sha256(directory / name):
            raise ArtifactError(f"model artifact {directory} is corrupted: {name} does not match its hash in {MANIFEST_FILE}")
    document = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
    if document.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"artifact format {document.get('format_version')} is not supported (expected {FORMAT_VERSION})")
    if expected_kind is not None and document.get("kind") != expected_kind:
        raise ArtifactError(f"artifact at {directory} holds a {document.get('kind')!r} model, not {expected_kind!r}")
    try:
        arrays = load_file(str(directory / ARRAYS_FILE))
    except SafetensorError as error:
        raise ArtifactError(f"cannot read {directory / ARRAYS_FILE}: {error}") from error
    files = {name: (directory / name).read_bytes() for name in extra}
    return Artifact(document["kind"], arrays, document["meta"], document["library_version"], files)


def _to_json(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in an artifact's metadata")
