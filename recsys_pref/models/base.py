"""The one recommender interface every model implements (baselines and the persona model).

A model is fitted on a (n_users, n_items) CSR of positives and scores users in two ways:
known users by their row in the training matrix (their state learned in training), and new
users from a history alone (fold-in: every shared weight frozen). Ranking, filtering and the
implicit-style `recommend` are written once here, on top of `score`.

Each model saves and loads itself (`save`, `Recommender.load`) as one artifact directory
(models.artifact: safetensors arrays, JSON metadata, a sha256 manifest, atomic writes, no
pickle). The base class stores the registered name, the class, the config and the training
shape; a subclass only says which arrays hold its fitted state (`_arrays`) and how to take
them back (`_restore`).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import scipy.sparse as sp

from recsys_pref.core.configs import ConfigError, config_from_dict
from recsys_pref.core.ranking import top_k
from recsys_pref.models.artifact import ArtifactError, load_artifact, save_artifact

Model = TypeVar("Model", bound="Recommender")


class NotFittedError(RuntimeError):
    """Raised when a model is used before `fit`."""


class ModelTooLargeError(ValueError):
    """Raised by `fit` when the data would need more memory than the model's configured limit."""


def check_user_items(user_items: Any, n_items: int | None = None, name: str = "user_items") -> sp.csr_matrix:
    """Validate a user x item interaction matrix and return it as float32 CSR.

    Raises TypeError for non-sparse input and ValueError for NaN/inf/negative values or a
    column count that does not match the model's catalog.
    """
    if not sp.issparse(user_items):
        raise TypeError(f"{name} must be a scipy.sparse matrix (users x items), got {type(user_items).__name__}")
    matrix = sp.csr_matrix(user_items, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {matrix.shape}")
    if n_items is not None and matrix.shape[1] != n_items:
        raise ValueError(f"{name} has {matrix.shape[1]} item columns but the model knows {n_items} items")
    if matrix.nnz and not np.isfinite(matrix.data).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if matrix.nnz and (matrix.data < 0).any():
        raise ValueError(f"{name} contains negative values; interactions must be non-negative weights")
    return matrix


def stored_array(arrays: dict[str, np.ndarray], name: str, shape: tuple[int | None, ...]) -> np.ndarray:
    """arrays[name], checked to have `shape` (None: any length on that axis), for `_restore`.

    Raises KeyError when it is missing and ValueError when its shape differs."""
    value = arrays[name]
    if value.ndim != len(shape) or any(want is not None and got != want for got, want in zip(value.shape, shape)):
        raise ValueError(f"array {name!r} has shape {value.shape}, expected {tuple('*' if s is None else s for s in shape)}")
    return value


class Recommender(ABC):
    """Base class: subclasses implement `_fit` and `_score`; `recommend` is shared.

    Attributes set by `fit`: n_users, n_items (the training matrix's shape).
    """

    name: ClassVar[str]
    config_class: ClassVar[type | None] = None  # the frozen dataclass of hyperparameters
    n_users: int | None = None
    n_items: int | None = None

    def __init__(self, config: Any = None, **params: Any) -> None:
        """`config` (default: `config_class()`), with any `params` overriding its fields."""
        if config is None and self.config_class is not None:
            config = self.config_class()
        self.config = replace(config, **params) if params else config

    # -- to implement ---------------------------------------------------------------------
    @abstractmethod
    def _fit(self, user_items: sp.csr_matrix) -> None:
        """Learn from a (n_users, n_items) float32 CSR of positives."""

    @abstractmethod
    def _score(self, user_items: sp.csr_matrix, userids: np.ndarray | None) -> np.ndarray:
        """Scores (n, n_items) float32 for n users whose histories are the rows of `user_items`.

        userids None: new users, folded in from `user_items` alone. Otherwise the training-matrix
        rows of known users (models with per-user state use it; others may ignore it).
        """

    # -- to implement for persistence (every registered model does) ----------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        """The fitted state as named arrays, everything `_restore` needs besides the config and
        the training shape (n_users, n_items)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be saved: it does not implement _arrays/_restore")

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        """Take back the state `_arrays` returned; config, n_users and n_items are already set.

        A missing array raises KeyError and an inconsistent one ValueError (`load` reports
        either as an ArtifactError)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be loaded: it does not implement _arrays/_restore")

    # -- shared ---------------------------------------------------------------------------
    def hyperparameters(self) -> dict[str, Any]:
        """The configuration as a flat dict, for result rows."""
        return asdict(self.config) if self.config is not None else {}

    def fit(self, user_items: sp.spmatrix) -> "Recommender":
        """Learn from a (n_users, n_items) sparse matrix of positives; returns the model."""
        matrix = check_user_items(user_items)
        if matrix.shape[0] == 0 or matrix.shape[1] == 0 or matrix.nnz == 0:
            raise ValueError(f"cannot fit {self.name} on an empty interaction matrix (shape {matrix.shape})")
        self.n_users, self.n_items = matrix.shape
        self._fit(matrix)
        return self

    def _check_fitted(self) -> None:
        if self.n_items is None:
            raise NotFittedError(f"{self.name} is not fitted: call fit() first")

    def score(self, user_items: sp.spmatrix, userids: np.ndarray | None = None) -> np.ndarray:
        """Validated scores (n, n_items) for the rows of `user_items` (see `_score`)."""
        self._check_fitted()
        matrix = check_user_items(user_items, self.n_items)
        if userids is not None:
            userids = np.asarray(userids, dtype=np.int64).reshape(-1)
            if len(userids) != matrix.shape[0]:
                raise ValueError(f"{len(userids)} userids but user_items has {matrix.shape[0]} rows")
            if userids.size and (userids.min() < 0 or userids.max() >= self.n_users):
                raise ValueError(f"userids must lie in 0..{self.n_users - 1} (users seen in fit)")
        return self._score(matrix, userids)

    def recommend(
        self,
        userid: int | np.ndarray,
        user_items: sp.spmatrix,
        N: int = 10,
        filter_already_liked_items: bool = True,
        filter_items: np.ndarray | None = None,
        recalculate_user: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-N items for one user (arrays of shape (N,)) or a batch ((n, N)), as implicit does.

        user_items holds the users' rows (one row per requested user). With
        recalculate_user=True the users are folded in from user_items instead of using their
        training state. Already-liked and filtered items are never returned: when fewer than N
        items remain, the lists are shorter (batch rows are padded with id -1 and score -inf).
        """
        single = np.ndim(userid) == 0
        userids = np.atleast_1d(np.asarray(userid, dtype=np.int64))
        matrix = check_user_items(user_items, self.n_items if self.n_items is not None else None)
        if matrix.shape[0] != len(userids):
            raise ValueError(f"user_items must have one row per user: {matrix.shape[0]} rows for {len(userids)} users")
        if N < 1:
            raise ValueError(f"N must be >= 1, got {N}")
        scores = self.score(matrix, None if recalculate_user else userids)
        exclude = matrix if filter_already_liked_items else None
        ids, values = top_k(scores, N, exclude=exclude, banned_items=filter_items)
        if single:
            keep = ids[0] >= 0
            return ids[0][keep], values[0][keep]
        return ids, values

    # -- persistence ----------------------------------------------------------------------
    def save(self, directory: Path | str) -> Path:
        """Write this fitted model to the artifact directory `directory`, atomically (an
        interrupted save leaves the previous artifact intact); returns the directory."""
        self._check_fitted()
        return save_artifact(Path(directory), self.name, self._arrays(), self.artifact_meta())

    def artifact_meta(self) -> dict[str, Any]:
        """What an artifact stores besides the arrays: class, config and training shape (a
        container such as the serving pipeline's artifact embeds it with `_arrays()`)."""
        return {
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "config": asdict(self.config) if self.config is not None else None,
            "n_users": self.n_users,
            "n_items": self.n_items,
        }

    @classmethod
    def load(cls: type[Model], directory: Path | str) -> Model:
        """The model saved at `directory`. `Recommender.load` builds whichever registered model
        is stored there; `ALS.load` (any subclass) also checks that it is one of its own.

        Raises ArtifactError when the directory is not a complete, uncorrupted artifact, holds
        another model, was written in a newer format, or stores a config or arrays that this
        version cannot take back (naming the field or array).
        """
        artifact = load_artifact(Path(directory))
        return cls.from_artifact(artifact.kind, artifact.arrays, artifact.meta, str(directory))

    @classmethod
    def from_artifact(cls: type[Model], kind: str, arrays: dict[str, np.ndarray], meta: dict[str, Any],
                      where: str) -> Model:
        """The model of registered name `kind` from its arrays and `artifact_meta()`; `where`
        names the artifact in errors (ArtifactError, as `load`)."""
        model_class = cls._stored_class(kind, where)
        try:
            config = None if model_class.config_class is None else config_from_dict(
                model_class.config_class, meta["config"])
            model = model_class() if config is None else model_class(config)
            model.n_users, model.n_items = int(meta["n_users"]), int(meta["n_items"])
            model._restore(arrays)
        except ConfigError as error:
            raise ArtifactError(f"artifact at {where} stores a config this version cannot read: {error}") from error
        except KeyError as error:
            raise ArtifactError(f"artifact at {where} lacks {error.args[0]!r}, which {model_class.__name__} "
                                "needs") from error
        except (TypeError, ValueError) as error:
            raise ArtifactError(f"artifact at {where} holds a {kind!r} model this version cannot "
                                f"restore: {error}") from error
        return model

    @classmethod
    def _stored_class(cls: type[Model], kind: str, directory: Path | str) -> type[Model]:
        """The class to rebuild an artifact of registered name `kind` with: `cls` itself when
        that is its name, else the registered model of that name if it is a `cls`."""
        if kind == getattr(cls, "name", None):
            return cls
        from recsys_pref.models import MODELS  # the registry is built on top of this module

        stored = MODELS.get(kind)
        if stored is None:
            raise ArtifactError(f"artifact at {directory} holds an unknown model {kind!r}; "
                                f"registered: {', '.join(sorted(MODELS))}")
        if not issubclass(stored, cls):
            raise ArtifactError(f"artifact at {directory} holds a {kind!r} model, not a {cls.name!r} one")
        return stored
