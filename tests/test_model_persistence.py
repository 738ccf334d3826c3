"""Specification of `Recommender.save` / `Recommender.load` (models.base): one artifact
directory per model, the base class storing name, class, config and training shape, each
model its arrays; every way an artifact can be wrong is a clear ArtifactError.

The round trip of every registered model is in test_model_contract.py.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from safetensors.numpy import load_file, save_file

from recsys_pref.core.version import __version__
from recsys_pref.models import ALS, EASE, Popularity, Recommender
from recsys_pref.models.artifact import ARRAYS_FILE, MANIFEST_FILE, META_FILE, ArtifactError, _sha256


@pytest.fixture(scope="module")
def saved_ease(random_items: sp.csr_matrix, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return EASE(l2=5.0).fit(random_items).save(tmp_path_factory.mktemp("ease") / "model")


@pytest.fixture
def ease_copy(saved_ease: Path, tmp_path: Path) -> Path:
    """A copy of the saved EASE artifact that a test may damage."""
    copy = tmp_path / "model"
    copy.mkdir()
    for file in saved_ease.iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    return copy


def rehash(directory: Path, name: str) -> None:
    """Record file `name`'s new hash in the manifest (a deliberate edit, not corruption)."""
    manifest = json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8"))
    manifest[name] = _sha256(directory / name)
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")


def edit_document(directory: Path, change: Callable[[dict], None]) -> None:
    document = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
    change(document)
    (directory / META_FILE).write_text(json.dumps(document), encoding="utf-8")
    rehash(directory, META_FILE)


def edit_arrays(directory: Path, change: Callable[[dict], None]) -> None:
    arrays = load_file(str(directory / ARRAYS_FILE))
    change(arrays)
    save_file(arrays, str(directory / ARRAYS_FILE))
    rehash(directory, ARRAYS_FILE)


def test_an_artifact_holds_safetensors_json_and_a_manifest_only(saved_ease: Path) -> None:
    assert sorted(path.name for path in saved_ease.iterdir()) == sorted([ARRAYS_FILE, META_FILE, MANIFEST_FILE])


def test_the_metadata_names_the_model_its_class_config_shape_and_library_version(saved_ease: Path) -> None:
    document = json.loads((saved_ease / META_FILE).read_text(encoding="utf-8"))
    assert document["kind"] == "ease" and document["library_version"] == __version__
    assert document["meta"]["class"] == "recsys_pref.models.ease.EASE"
    assert document["meta"]["config"] == {"l2": 5.0, "max_items": 30_000}
    assert (document["meta"]["n_users"], document["meta"]["n_items"]) == (60, 40)


def test_recommender_load_builds_the_model_class_stored(saved_ease: Path) -> None:
    assert type(Recommender.load(saved_ease)) is EASE


def test_loading_another_model_class_raises_naming_both(saved_ease: Path) -> None:
    with pytest.raises(ArtifactError, match="holds a 'ease' model, not a 'als' one"):
        ALS.load(saved_ease)


def test_an_unregistered_model_name_raises_listing_the_registered_ones(ease_copy: Path) -> None:
    edit_document(ease_copy, lambda document: document.update(kind="mystery"))
    with pytest.raises(ArtifactError, match="unknown model 'mystery'; registered: .*als.*ease"):
        Recommender.load(ease_copy)


def test_an_artifact_of_a_newer_format_asks_for_an_upgrade(ease_copy: Path) -> None:
    edit_document(ease_copy, lambda document: document.update(format_version=2, library_version="9.0.0"))
    with pytest.raises(ArtifactError, match="format 2, written by recsys_pref 9.0.0.*upgrade recsys_pref"):
        Recommender.load(ease_copy)


def test_a_corrupted_arrays_file_is_refused(ease_copy: Path) -> None:
    data = bytearray((ease_copy / ARRAYS_FILE).read_bytes())
    data[-5] ^= 0x01
    (ease_copy / ARRAYS_FILE).write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="corrupted.*arrays.safetensors"):
        Recommender.load(ease_copy)


def test_an_unknown_config_field_is_named(ease_copy: Path) -> None:
    edit_document(ease_copy, lambda document: document["meta"]["config"].update(lambda_=3.0))
    with pytest.raises(ArtifactError, match="EASEConfig has no field.*lambda_"):
        Recommender.load(ease_copy)


def test_a_config_value_of_the_wrong_type_is_named(ease_copy: Path) -> None:
    edit_document(ease_copy, lambda document: document["meta"]["config"].update(max_items="many"))
    with pytest.raises(ArtifactError, match="EASEConfig.max_items must be int, got 'many'"):
        Recommender.load(ease_copy)


def test_a_config_value_the_model_rejects_is_reported(ease_copy: Path) -> None:
    edit_document(ease_copy, lambda document: document["meta"]["config"].update(l2=-1.0))
    with pytest.raises(ArtifactError, match="l2 must be > 0"):
        Recommender.load(ease_copy)


def test_a_missing_array_is_named(ease_copy: Path) -> None:
    edit_arrays(ease_copy, lambda arrays: arrays.update(other=arrays.pop("B")))
    with pytest.raises(ArtifactError, match="lacks 'B'"):
        Recommender.load(ease_copy)


def test_an_array_of_the_wrong_shape_is_named(ease_copy: Path) -> None:
    edit_arrays(ease_copy, lambda arrays: arrays.update(B=arrays["B"][:3]))
    with pytest.raises(ArtifactError, match=r"'B' has shape \(3, 40\), expected \(40, 40\)"):
        Recommender.load(ease_copy)


def test_saving_replaces_an_earlier_artifact_of_the_same_model(random_items: sp.csr_matrix, tmp_path: Path) -> None:
    directory = Popularity().fit(random_items).save(tmp_path / "model")
    Popularity().fit(random_items[:10]).save(directory)
    assert Recommender.load(directory).n_users == 10


def test_a_model_without_persistence_hooks_cannot_be_saved(tmp_path: Path) -> None:
    class Constant(Recommender):
        name = "constant"

        def _fit(self, user_items: sp.csr_matrix) -> None:
            pass

        def _score(self, user_items: sp.csr_matrix, userids: np.ndarray | None) -> np.ndarray:
            return np.zeros((user_items.shape[0], self.n_items), np.float32)

    model = Constant().fit(sp.csr_matrix(np.ones((2, 3), np.float32)))
    with pytest.raises(NotImplementedError, match="Constant cannot be saved"):
        model.save(tmp_path / "model")
    assert not (tmp_path / "model").exists()
