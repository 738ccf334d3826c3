"""Specification of model artifacts (safetensors + JSON + manifest) in recsys_pref.models.artifact."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import recsys_pref
from recsys_pref.models import artifact
from recsys_pref.models.artifact import (
    ARRAYS_FILE,
    MANIFEST_FILE,
    META_FILE,
    ArtifactError,
    load_artifact,
    save_artifact,
)

ARRAYS = {
    "item_factors": np.arange(12, dtype=np.float32).reshape(4, 3),
    "counts": np.array([3, 1, 4, 1, 5], dtype=np.int64),
    "flags": np.array([1, 0, 1], dtype=np.uint8),
}
META = {"config": {"factors": 3, "alpha": 0.5}, "item_ids": [10, 20, 30, 40], "note": "héllo"}


def leftovers(parent: Path, name: str) -> list[str]:
    """Hidden staging (".NAME.saving-*") or retired (".NAME.old-*") siblings of an artifact."""
    return sorted(entry.name for entry in parent.iterdir() if entry.name.startswith(f".{name}."))


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    return save_artifact(tmp_path / "model", "als", ARRAYS, META)


def test_round_trip_preserves_arrays_and_meta(saved: Path) -> None:
    loaded = load_artifact(saved)
    assert loaded.kind == "als"
    assert loaded.meta == META
    assert set(loaded.arrays) == set(ARRAYS)
    for name, value in ARRAYS.items():
        assert loaded.arrays[name].dtype == value.dtype
        np.testing.assert_array_equal(loaded.arrays[name], value)


def test_round_trip_records_the_library_version(saved: Path) -> None:
    assert load_artifact(saved).library_version == recsys_pref.__version__


def test_save_returns_the_directory_with_the_three_files(tmp_path: Path) -> None:
    directory = save_artifact(tmp_path / "nested" / "model", "ease", ARRAYS, META)
    assert directory == tmp_path / "nested" / "model"
    assert sorted(path.name for path in directory.iterdir()) == sorted([ARRAYS_FILE, META_FILE, MANIFEST_FILE])


def test_numpy_values_in_meta_are_stored_as_json_lists(tmp_path: Path) -> None:
    directory = save_artifact(tmp_path / "model", "als", {"w": np.zeros(2, np.float32)}, {"ids": np.array([1, 2])})
    assert load_artifact(directory).meta == {"ids": [1, 2]}


def test_meta_that_is_not_json_serialisable_is_rejected_without_leftovers(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        save_artifact(tmp_path / "model", "als", ARRAYS, {"bad": object()})
    assert not (tmp_path / "model").exists()
    assert leftovers(tmp_path, "model") == []


def test_non_contiguous_arrays_round_trip(tmp_path: Path) -> None:
    strided = np.arange(20, dtype=np.float32).reshape(4, 5)[:, ::2]
    directory = save_artifact(tmp_path / "model", "als", {"strided": strided}, {})
    np.testing.assert_array_equal(load_artifact(directory).arrays["strided"], strided)


def test_saving_again_replaces_the_artifact_without_leftovers(saved: Path) -> None:
    save_artifact(saved, "als", {"item_factors": np.ones((2, 2), np.float32)}, {"version": 2})
    loaded = load_artifact(saved)
    assert loaded.meta == {"version": 2}
    assert set(loaded.arrays) == {"item_factors"}
    assert leftovers(saved.parent, saved.name) == []


def test_save_interrupted_while_writing_arrays_keeps_the_previous_artifact(
    saved: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(tensors: dict, filename: str, *args, **kwargs) -> None:
        Path(filename).write_bytes(b"half a file")
        raise KeyboardInterrupt("interrupted mid-save")

    monkeypatch.setattr(artifact, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        save_artifact(saved, "als", {"other": np.zeros(3, np.float32)}, {"version": 2})
    loaded = load_artifact(saved)
    assert loaded.meta == META
    np.testing.assert_array_equal(loaded.arrays["counts"], ARRAYS["counts"])
    assert leftovers(saved.parent, saved.name) == []


def test_save_failing_in_swap_keeps_the_previous_artifact(saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(staging: Path, directory: Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(artifact, "_swap_in", crash)
    with pytest.raises(OSError):
        save_artifact(saved, "als", {"other": np.zeros(3, np.float32)}, {"version": 2})
    assert load_artifact(saved).meta == META
    assert leftovers(saved.parent, saved.name) == []


def test_save_failing_between_the_two_renames_of_the_swap_keeps_the_previous_artifact(
    saved: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace = os.replace
    calls = []

    def replace_failing_second_time(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # the old artifact is already moved aside; the new one fails to move in
            raise OSError("interrupted")
        return real_replace(src, dst)

    monkeypatch.setattr(artifact.os, "replace", replace_failing_second_time)
    with pytest.raises(OSError):
        save_artifact(saved, "als", {"other": np.zeros(3, np.float32)}, {"version": 2})
    monkeypatch.undo()
    assert load_artifact(saved).meta == META
    assert leftovers(saved.parent, saved.name) == []


def test_first_save_interrupted_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(tensors: dict, filename: str, *args, **kwargs) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(artifact, "save_file", crash)
    with pytest.raises(RuntimeError):
        save_artifact(tmp_path / "model", "als", ARRAYS, META)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", [ARRAYS_FILE, META_FILE])
def test_a_flipped_byte_is_reported_as_corrupted(saved: Path, name: str) -> None:
    path = saved / name
    flip_byte(path, path.stat().st_size // 2)
    with pytest.raises(ArtifactError, match="corrupted") as error:
        load_artifact(saved)
    assert name in str(error.value)


@pytest.mark.parametrize("name", [ARRAYS_FILE, META_FILE, MANIFEST_FILE])
def test_a_missing_file_is_named_in_the_error(saved: Path, name: str) -> None:
    (saved / name).unlink()
    with pytest.raises(ArtifactError, match=name.replace(".", r"\.")):
        load_artifact(saved)


def test_a_missing_directory_raises_artifact_error(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no model artifact"):
        load_artifact(tmp_path / "absent")


def test_an_unreadable_manifest_raises_artifact_error(saved: Path) -> None:
    (saved / MANIFEST_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(ArtifactError, match="MANIFEST"):
        load_artifact(saved)


def test_wrong_expected_kind_raises_artifact_error(saved: Path) -> None:
    with pytest.raises(ArtifactError, match="'als'.*'ease'"):
        load_artifact(saved, expected_kind="ease")


def test_matching_expected_kind_loads(saved: Path) -> None:
    assert load_artifact(saved, expected_kind="als").kind == "als"


def test_artifact_error_is_a_value_error() -> None:
    assert issubclass(ArtifactError, ValueError)


def test_unsupported_format_version_raises_artifact_error(saved: Path) -> None:
    document = json.loads((saved / META_FILE).read_text(encoding="utf-8"))
    document["format_version"] = 999
    (saved / META_FILE).write_text(json.dumps(document), encoding="utf-8")
    manifest = json.loads((saved / MANIFEST_FILE).read_text(encoding="utf-8"))
    manifest[META_FILE] = artifact._sha256(saved / META_FILE)
    (saved / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(ArtifactError, match="format"):
        load_artifact(saved)


def test_refuses_to_overwrite_a_directory_that_is_not_an_artifact(tmp_path: Path) -> None:
    precious = tmp_path / "results"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work", encoding="utf-8")
    with pytest.raises(ArtifactError, match="not a model artifact"):
        save_artifact(precious, "als", ARRAYS, META)
    assert [path.name for path in precious.iterdir()] == ["thesis.tex"]
    assert (precious / "thesis.tex").read_text(encoding="utf-8") == "years of work"
    assert leftovers(tmp_path, "results") == []


# -- what a killed save leaves behind ---------------------------------------------------------


def dead_process_id() -> int:
    """A process id that no running process has (a child that has already exited)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def killed_save(parent: Path, name: str, role: str, pid: int) -> Path:
    """A sibling as a save killed at that point leaves it: `.NAME.ROLE-PID-random/` holding a
    (here tiny) artifact directory NAME."""
    sibling = parent / f".{name}.{role}-{pid}-x1y2z3"
    save_artifact(sibling / name, "als", ARRAYS, {"left": "behind"})
    return sibling


@pytest.mark.parametrize("role", ["saving", "old"])
def test_the_next_save_removes_what_a_killed_save_left_behind(saved: Path, role: str) -> None:
    killed_save(saved.parent, saved.name, role, dead_process_id())
    save_artifact(saved, "als", ARRAYS, {"version": 2})
    assert leftovers(saved.parent, saved.name) == []
    assert load_artifact(saved).meta == {"version": 2}


def test_leftovers_without_a_process_id_are_removed_too(saved: Path) -> None:
    (saved.parent / f".{saved.name}.saving-abc123").mkdir()
    save_artifact(saved, "als", ARRAYS, META)
    assert leftovers(saved.parent, saved.name) == []


def test_the_siblings_of_a_save_still_running_are_kept(saved: Path) -> None:
    running = killed_save(saved.parent, saved.name, "saving", os.getppid())
    save_artifact(saved, "als", ARRAYS, META)
    assert leftovers(saved.parent, saved.name) == [running.name]


def test_a_save_killed_between_the_two_renames_gets_the_previous_artifact_back(tmp_path: Path) -> None:
    """The kill came after the old artifact was moved aside and before the new one moved in."""
    retired = killed_save(tmp_path, "model", "old", dead_process_id())
    save_artifact(tmp_path / "model", "als", ARRAYS, {"version": 2})
    assert load_artifact(tmp_path / "model").meta == {"version": 2}
    assert not retired.exists()


def test_the_next_save_restores_the_retired_artifact_before_writing(tmp_path: Path, monkeypatch) -> None:
    killed_save(tmp_path, "model", "old", dead_process_id())

    def crash(tensors: dict, filename: str, *args, **kwargs) -> None:
        raise RuntimeError("this save fails too")

    monkeypatch.setattr(artifact, "save_file", crash)
    with pytest.raises(RuntimeError):
        save_artifact(tmp_path / "model", "als", ARRAYS, {"version": 2})
    assert load_artifact(tmp_path / "model").meta == {"left": "behind"}


def test_sparse_matrices_round_trip_through_their_csr_arrays(tmp_path: Path) -> None:
    matrix = sp.random(5, 7, density=0.3, format="csr", dtype=np.float32, random_state=0)
    save_artifact(tmp_path / "model", "itemknn", artifact.csr_arrays("similarity", matrix), {})
    restored = artifact.csr_from_arrays(load_artifact(tmp_path / "model").arrays, "similarity", (5, 7))
    assert (restored != matrix).nnz == 0 and restored.dtype == np.float32
