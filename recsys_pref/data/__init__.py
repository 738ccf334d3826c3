"""Datasets (named, from files or frames, synthetic with planted personas) and evaluation splits."""
from recsys_pref.data.dataset import IdMap, InteractionDataset, UnknownIdError, UntrainableDatasetError, check_trainable
from recsys_pref.data.loaders import (
    DATASET_DEFAULT,
    DATASET_NAMES,
    DuplicateInteractionsWarning,
    from_frame,
    load_dataset,
)
from recsys_pref.data.paths import DatasetNotFoundError, find_dataset_dir, resolve_data_dir
from recsys_pref.data.splits import HeldOut, Split, SplitConfig, make_split
from recsys_pref.data.synthetic import SyntheticTruth, make_synthetic

__all__ = [
    "DATASET_DEFAULT",
    "DATASET_NAMES",
    "DatasetNotFoundError",
    "DuplicateInteractionsWarning",
    "HeldOut",
    "IdMap",
    "InteractionDataset",
    "Split",
    "SplitConfig",
    "SyntheticTruth",
    "UnknownIdError",
    "UntrainableDatasetError",
    "check_trainable",
    "find_dataset_dir",
    "from_frame",
    "load_dataset",
    "make_split",
    "make_synthetic",
    "resolve_data_dir",
]
