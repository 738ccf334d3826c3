"""Turn a dataset name, a data file or a polars frame into an `InteractionDataset`.

Rules every source goes through (`from_frame`):

- ids: integer columns become Int64, string columns stay Utf8 (Categorical becomes Utf8),
  float columns holding only whole numbers become Int64; anything else (an Object column
  mixing ints and strings, non-integral floats) is a ValueError. Null or NaN ids are a
  ValueError that says how many rows have them.
- rating: any numeric column, as Float64; null or NaN ratings are a ValueError. Without a
  rating column every row is a positive with rating 1.0.
- timestamp: integer seconds, Datetime or Date (as epoch seconds), or floats (truncated to
  whole seconds, NaN as null); nulls are allowed. Without the column it is all null.
- duplicate (user, item) rows are merged into one with the highest rating and the latest
  timestamp, in order of first appearance, and a DuplicateInteractionsWarning says how many.
- id maps are the sorted unique external ids; the items frame has one row per mapped item
  (items never interacted with are left out), titles default to the id as text, genres and
  tags to empty lists.

Named datasets (`DATASET_NAMES`) have fixed file formats; their column options are unused.
"""
from __future__ import annotations

import inspect
import os
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import polars as pl

from recsys_pref.data.dataset import IdMap, InteractionDataset
from recsys_pref.data.paths import DatasetNotFoundError, find_dataset_dir
from recsys_pref.data.synthetic import make_synthetic

DATASET_NAMES = ("ml-100k", "ml-latest-small", "ml-1m", "gowalla", "synthetic")
MOVIELENS_POSITIVE_THRESHOLD = 4.0
FILE_SEPARATORS = {".csv": ",", ".tsv": "\t", ".parquet": None}
_LIST = pl.List(pl.String)
_INTERACTION_SCHEMA = {"user_id": pl.Int64, "item_id": pl.Int64, "rating": pl.Float64, "timestamp": pl.Int64}


class _DatasetDefault:
    """Sentinel type for "the dataset's own positive threshold"."""

    def __repr__(self) -> str:
        return "DATASET_DEFAULT"


DATASET_DEFAULT = _DatasetDefault()
"""positive_threshold default: 4.0 for MovieLens, None (all rows positive) for the others."""


class DuplicateInteractionsWarning(UserWarning):
    """Some (user, item) pairs occurred more than once and were merged."""


def load_dataset(
    name_or_path: str | os.PathLike,
    *,
    data_dir: str | os.PathLike | None = None,
    user_col: str = "user_id",
    item_col: str = "item_id",
    rating_col: str | None = "rating",
    timestamp_col: str | None = "timestamp",
    positive_threshold: float | None | _DatasetDefault = DATASET_DEFAULT,
    **synthetic_kwargs: Any,
) -> InteractionDataset:
    """Load a dataset by name (one of DATASET_NAMES) or from a .csv, .tsv or .parquet file.

    data_dir: root holding `<name>/` directories (see data.paths for the search order).
    user_col, item_col, rating_col, timestamp_col: the file's columns (files only); see
        `from_frame` for optional ones.
    positive_threshold: ratings >= it are positives; DATASET_DEFAULT gives 4.0 for MovieLens
        and None (every row a positive) for gowalla, synthetic and files.
    synthetic_kwargs: arguments of `make_synthetic`, for "synthetic" only.
    """
    if data_dir is not None and not Path(data_dir).expanduser().is_dir():
        raise DatasetNotFoundError(f"data directory {data_dir} does not exist (or is not a directory)")
    if isinstance(name_or_path, str) and name_or_path in DATASET_NAMES:
        dataset = _load_named(name_or_path, data_dir, synthetic_kwargs)
        if positive_threshold is DATASET_DEFAULT:
            return dataset
        return replace(dataset, positive_threshold=positive_threshold)
    path = Path(name_or_path)
    if path.suffix.lower() not in FILE_SEPARATORS:
        raise ValueError(
            f"unknown dataset {str(name_or_path)!r}: expected one of {', '.join(DATASET_NAMES)} "
            f"or a path to a {', '.join(FILE_SEPARATORS)} file"
        )
    _reject_synthetic_kwargs(str(name_or_path), synthetic_kwargs)
    if not path.is_file():
        raise DatasetNotFoundError(f"data file {path} does not exist")
    frame = read_table(path, id_columns=(user_col, item_col))
    threshold = None if positive_threshold is DATASET_DEFAULT else positive_threshold
    return from_frame(frame, path.stem, user_col, item_col, rating_col, timestamp_col, threshold)


def from_frame(
    frame: pl.DataFrame,
    name: str = "frame",
    user_col: str = "user_id",
    item_col: str = "item_id",
    rating_col: str | None = "rating",
    timestamp_col: str | None = "timestamp",
    positive_threshold: float | None = None,
    items: pl.DataFrame | None = None,
) -> InteractionDataset:
    """A dataset from a frame of interactions (rules in the module docstring).

    rating_col / timestamp_col: None means the frame has none. When the default names
        ("rating", "timestamp") are absent from the frame they are treated as None; any
        other name that is absent is an error.
    items: optional metadata with column item_id and any of title, genres, tags (List[Utf8]).
    """
    interactions = normalize_interactions(frame, name, user_col, item_col, rating_col, timestamp_col)
    return _assemble(name, interactions, items, positive_threshold)


def normalize_interactions(
    frame: pl.DataFrame,
    source: str,
    user_col: str = "user_id",
    item_col: str = "item_id",
    rating_col: str | None = "rating",
    timestamp_col: str | None = "timestamp",
) -> pl.DataFrame:
    """The checked interactions of `frame` in the canonical columns and dtypes, one row per
    (user, item). `source` names the data in error messages."""
    if frame.height == 0:
        raise ValueError(f"{source}: the data is empty (no interaction rows)")
    rating_col = _optional_column(frame, source, rating_col, "rating")
    timestamp_col = _optional_column(frame, source, timestamp_col, "timestamp")
    for column, role in ((user_col, "user id"), (item_col, "item id")):
        _require_column(frame, source, column, role)
    n = frame.height
    ratings = _rating_series(frame[rating_col], source) if rating_col else pl.Series([1.0] * n)
    no_time = pl.Series([None] * n, dtype=pl.Int64)
    timestamps = _timestamp_series(frame[timestamp_col], source) if timestamp_col else no_time
    interactions = pl.DataFrame(
        [
            _id_series(frame[user_col], source, "user").alias("user_id"),
            _id_series(frame[item_col], source, "item").alias("item_id"),
            ratings.alias("rating"),
            timestamps.alias("timestamp"),
        ]
    )
    return _merge_duplicates(interactions, source)


def read_table(path: Path, id_columns: tuple[str, ...] = ()) -> pl.DataFrame:
    """A .csv/.tsv/.parquet file as a frame; ValueError when it is empty or unreadable.

    CSV/TSV id columns are read as text and become Int64 only when every value is a
    canonical integer ("7", not "007"), so ids are never silently merged or mistyped.
    """
    separator = FILE_SEPARATORS[path.suffix.lower()]
    try:
        if separator is None:
            return pl.read_parquet(path)
        header = pl.read_csv(path, separator=separator, n_rows=0).columns
        as_text = {column: pl.String for column in id_columns if column in header}
        frame = pl.read_csv(path, separator=separator, schema_overrides=as_text, try_parse_dates=True)
    except pl.exceptions.NoDataError:
        raise ValueError(f"{path}: the file is empty") from None
    except (pl.exceptions.PolarsError, OSError) as error:
        raise ValueError(f"{path}: could not read it as {path.suffix.lower()[1:]}: {error}") from error
    return frame.with_columns(_integers_if_canonical(frame[column]) for column in as_text)


def _load_named(name: str, data_dir: str | os.PathLike | None, synthetic_kwargs: dict[str, Any]) -> InteractionDataset:
    if name == "synthetic":
        valid = list(inspect.signature(make_synthetic).parameters)
        unknown = sorted(set(synthetic_kwargs) - set(valid))
        if unknown:
            raise TypeError(f"make_synthetic has no argument(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
        return make_synthetic(**synthetic_kwargs)
    _reject_synthetic_kwargs(name, synthetic_kwargs)
    return _NAMED_LOADERS[name](find_dataset_dir(name, data_dir))


def _reject_synthetic_kwargs(name: str, kwargs: dict[str, Any]) -> None:
    if kwargs:
        raise TypeError(
            f"unexpected argument(s) {', '.join(sorted(kwargs))} for {name!r}: "
            f"only 'synthetic' takes generator arguments"
        )


# --- checks and conversions -------------------------------------------------------------


def _require_column(frame: pl.DataFrame, source: str, column: str, role: str) -> None:
    if column not in frame.columns:
        raise ValueError(f"{source}: missing {role} column {column!r}; available columns: {', '.join(frame.columns)}")


def _optional_column(frame: pl.DataFrame, source: str, column: str | None, default: str) -> str | None:
    """`column` if the frame has it; None if it is None or the absent default name."""
    if column is None or (column == default and column not in frame.columns):
        return None
    _require_column(frame, source, column, default)
    return column


def _id_series(series: pl.Series, source: str, kind: str) -> pl.Series:
    dtype = series.dtype
    described = f"{source}: {kind} id column {series.name!r}"
    if dtype == pl.Object:
        raise ValueError(
            f"{described} has mixed or Python-object values; ids must be all integers or all "
            f"strings: convert the column to one type first (e.g. every value to str)"
        )
    missing = series.null_count() + (int(series.is_nan().sum()) if dtype.is_float() else 0)
    if missing:
        raise ValueError(f"{described} is null or NaN in {missing} row(s); drop or fill those rows first")
    if dtype == pl.String:
        return series
    if dtype in (pl.Categorical, pl.Enum):
        return series.cast(pl.String)
    if dtype.is_integer():
        return _cast(series, pl.Int64, described)
    if dtype.is_float():
        if (series != series.floor()).any():
            raise ValueError(f"{described} holds non-integral numbers; ids must be integers or strings")
        return _cast(series, pl.Int64, described)
    raise ValueError(f"{described} has dtype {dtype}; ids must be integers or strings")


def _rating_series(series: pl.Series, source: str) -> pl.Series:
    if not series.dtype.is_numeric():
        raise ValueError(f"{source}: rating column {series.name!r} has dtype {series.dtype}; ratings must be numbers")
    ratings = series.cast(pl.Float64)
    missing = ratings.null_count() + int(ratings.is_nan().sum())
    if missing:
        raise ValueError(
            f"{source}: rating column {series.name!r} is null or NaN in {missing} row(s); drop or fill those rows first"
        )
    return ratings


def _timestamp_series(series: pl.Series, source: str) -> pl.Series:
    dtype = series.dtype
    if dtype in (pl.Datetime, pl.Date):
        return series.dt.epoch("s")
    if dtype.is_integer() or dtype == pl.Null:
        return _cast(series, pl.Int64, f"{source}: timestamp column {series.name!r}")
    if dtype.is_float():
        return series.fill_nan(None).floor().cast(pl.Int64)
    raise ValueError(
        f"{source}: timestamp column {series.name!r} has dtype {dtype}; expected integer seconds, a Datetime or a Date"
    )


def _cast(series: pl.Series, dtype: pl.DataType, described: str) -> pl.Series:
    try:
        return series.cast(dtype)
    except pl.exceptions.PolarsError as error:
        raise ValueError(f"{described} cannot be converted to {dtype}: {error}") from error


def _integers_if_canonical(series: pl.Series) -> pl.Series:
    """Text ids as Int64 when every value round-trips through an integer, else unchanged."""
    as_int = series.cast(pl.Int64, strict=False)
    canonical = as_int.null_count() == series.null_count() and (as_int.cast(pl.String) == series).all()
    return as_int if canonical else series


def _merge_duplicates(interactions: pl.DataFrame, source: str) -> pl.DataFrame:
    """One row per (user, item): the highest rating and latest timestamp, in first-seen order."""
    n_pairs = interactions.n_unique(subset=["user_id", "item_id"])
    if n_pairs == interactions.height:
        return interactions
    warnings.warn(
        f"{source}: merged {interactions.height - n_pairs} duplicate (user, item) row(s), keeping "
        f"the highest rating and the latest timestamp of each pair",
        DuplicateInteractionsWarning,
        stacklevel=4,
    )
    return interactions.group_by("user_id", "item_id", maintain_order=True).agg(
        pl.col("rating").max(), pl.col("timestamp").max()
    )


# --- assembling the dataset -------------------------------------------------------------


def _assemble(
    name: str,
    interactions: pl.DataFrame,
    items: pl.DataFrame | None,
    positive_threshold: float | None,
    fixed_test: pl.DataFrame | None = None,
) -> InteractionDataset:
    """Id maps over the interactions (and the fixed test rows) and the completed items frame."""
    every = interactions if fixed_test is None else pl.concat([interactions, fixed_test])
    user_order = every["user_id"].unique().sort()
    item_order = every["item_id"].unique().sort()
    return InteractionDataset(
        name=name,
        interactions=interactions,
        items=_complete_items(items, item_order, name),
        user_ids=IdMap(user_order.to_numpy(), "user"),
        item_ids=IdMap(item_order.to_numpy(), "item"),
        positive_threshold=positive_threshold,
        fixed_test=fixed_test,
    )


def _complete_items(items: pl.DataFrame | None, item_order: pl.Series, source: str) -> pl.DataFrame:
    """One row per id of `item_order`, in that order, with title, genres and tags filled in."""
    ordered = pl.DataFrame({"item_id": item_order}).with_row_index("_position")
    if items is not None:
        _require_column(items, f"{source} items", "item_id", "item id")
        known = [column for column in ("item_id", "title", "genres", "tags") if column in items.columns]
        items = items.select(known).with_columns(_cast(items["item_id"], item_order.dtype, f"{source} items: item_id"))
        if items["item_id"].is_duplicated().any():
            raise ValueError(f"{source} items: item_id has duplicates; give one metadata row per item")
        ordered = ordered.join(items, on="item_id", how="left").sort("_position")
    id_text = pl.col("item_id").cast(pl.String)
    empty = pl.lit([], dtype=_LIST)
    return ordered.select(
        "item_id",
        pl.col("title").cast(pl.String).fill_null(id_text) if "title" in ordered.columns else id_text.alias("title"),
        *(
            pl.col(column).cast(_LIST).fill_null(empty) if column in ordered.columns else empty.alias(column)
            for column in ("genres", "tags")
        ),
    )


# --- named datasets ----------------------------------------------------------------------


def _load_ml_100k(directory: Path) -> InteractionDataset:
    """u.data (tab-separated user, item, rating, timestamp), u.item (Latin-1, `|`-separated:
    id, title, dates, url, then one 0/1 flag per genre of u.genre). The genre "unknown"
    means none and is left out of the lists."""
    ratings = pl.read_csv(directory / "u.data", separator="\t", has_header=False, schema=_INTERACTION_SCHEMA)
    genre_lines = _read_latin1(directory / "u.genre")
    genre_names = [line.split("|")[0] for line in genre_lines]
    ids, titles, genres = [], [], []
    for line in _read_latin1(directory / "u.item"):
        fields = line.split("|")
        if len(fields) != 5 + len(genre_names):
            raise ValueError(f"{directory / 'u.item'}: expected {5 + len(genre_names)} fields in line {line[:60]!r}")
        ids.append(int(fields[0]))
        titles.append(fields[1])
        genres.append([g for g, flag in zip(genre_names, fields[5:]) if flag == "1" and g != "unknown"])
    interactions = normalize_interactions(ratings, "ml-100k")
    return _assemble("ml-100k", interactions, _movie_frame(ids, titles, genres), MOVIELENS_POSITIVE_THRESHOLD)


def _load_ml_latest_small(directory: Path) -> InteractionDataset:
    """ratings.csv, movies.csv (genres `|`-separated, "(no genres listed)" = none) and
    tags.csv (per movie: its distinct tags, trimmed and lower-cased, sorted)."""
    ratings = pl.read_csv(directory / "ratings.csv", schema_overrides={"rating": pl.Float64}).rename(
        {"userId": "user_id", "movieId": "item_id"}
    )
    movies = pl.read_csv(directory / "movies.csv", schema_overrides={"title": pl.String, "genres": pl.String})
    tags = (
        pl.read_csv(directory / "tags.csv", schema_overrides={"tag": pl.String})
        .select("movieId", pl.col("tag").str.strip_chars().str.to_lowercase())
        .filter(pl.col("tag").is_not_null() & (pl.col("tag") != ""))
        .group_by("movieId")
        .agg(pl.col("tag").unique().sort().alias("tags"))
    )
    items = (
        movies.select(
            pl.col("movieId").alias("item_id"),
            "title",
            pl.when(pl.col("genres") == "(no genres listed)")
            .then(pl.lit([], dtype=_LIST))
            .otherwise(pl.col("genres").str.split("|"))
            .alias("genres"),
        )
        .join(tags.rename({"movieId": "item_id"}), on="item_id", how="left")
    )
    interactions = normalize_interactions(ratings, "ml-latest-small")
    return _assemble("ml-latest-small", interactions, items, MOVIELENS_POSITIVE_THRESHOLD)


def _load_ml_1m(directory: Path) -> InteractionDataset:
    """ratings.dat (`UserID::MovieID::Rating::Timestamp`) and movies.dat (Latin-1,
    `MovieID::Title::Genres` with `|`-separated genres)."""
    # `::` is two one-byte separators with an empty field between them
    spaced = {"user_id": pl.Int64, "_1": pl.String, "item_id": pl.Int64, "_2": pl.String,
              "rating": pl.Float64, "_3": pl.String, "timestamp": pl.Int64}
    ratings = pl.read_csv(directory / "ratings.dat", separator=":", has_header=False, schema=spaced)
    ids, titles, genres = [], [], []
    for line in _read_latin1(directory / "movies.dat"):
        movie_id, title, genre_text = line.split("::")
        ids.append(int(movie_id))
        titles.append(title)
        genres.append(genre_text.split("|") if genre_text else [])
    interactions = normalize_interactions(ratings.select(*_INTERACTION_SCHEMA), "ml-1m")
    return _assemble("ml-1m", interactions, _movie_frame(ids, titles, genres), MOVIELENS_POSITIVE_THRESHOLD)


def _load_gowalla(directory: Path) -> InteractionDataset:
    """train.txt / test.txt (`user item1 item2 ...`, 0-based ids) as interactions and the
    fixed test split (rating 1.0, no timestamps); titles name the SNAP location id from
    item_list.txt when it is there."""
    train = normalize_interactions(_read_adjacency(directory / "train.txt"), "gowalla train.txt")
    test = normalize_interactions(_read_adjacency(directory / "test.txt"), "gowalla test.txt")
    items = None
    if (directory / "item_list.txt").is_file():
        snap_schema = {"org_id": pl.Int64, "remap_id": pl.Int64}
        snap = pl.read_csv(directory / "item_list.txt", separator=" ", schema=snap_schema)
        items = snap.select(pl.col("remap_id").alias("item_id"), pl.format("location {}", "org_id").alias("title"))
    return _assemble("gowalla", train, items, None, fixed_test=test)


def _read_adjacency(path: Path) -> pl.DataFrame:
    """Lines `user item1 item2 ...` as (user_id, item_id) rows."""
    users: list[int] = []
    items: list[int] = []
    for line in path.read_text().splitlines():
        fields = line.split()
        if fields:
            users.extend([int(fields[0])] * (len(fields) - 1))
            items.extend(map(int, fields[1:]))
    return pl.DataFrame({"user_id": users, "item_id": items}, schema={"user_id": pl.Int64, "item_id": pl.Int64})


def _movie_frame(ids: list[int], titles: list[str], genres: list[list[str]]) -> pl.DataFrame:
    """Parsed MovieLens movie metadata as an items frame (tags are filled in later)."""
    schema = {"item_id": pl.Int64, "title": pl.String, "genres": _LIST}
    return pl.DataFrame({"item_id": ids, "title": titles, "genres": genres}, schema=schema)


def _read_latin1(path: Path) -> list[str]:
    """The non-empty lines of a Latin-1 text file."""
    return [line for line in path.read_bytes().decode("latin-1").splitlines() if line.strip()]


_NAMED_LOADERS: dict[str, Callable[[Path], InteractionDataset]] = {
    "ml-100k": _load_ml_100k,
    "ml-latest-small": _load_ml_latest_small,
    "ml-1m": _load_ml_1m,
    "gowalla": _load_gowalla,
}
