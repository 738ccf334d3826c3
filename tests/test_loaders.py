"""Loaders: the real datasets (skipped when their files are absent), files and frames with bad
input, and data-directory resolution. Nothing here touches the network: RECSYS_PREF_OFFLINE=1
is set for every test, and download tests use file:// URLs."""
from __future__ import annotations

import datetime
import hashlib
import os
import zipfile
from pathlib import Path

import polars as pl
import pytest

from recsys_pref.data import (
    DATASET_NAMES,
    DatasetNotFoundError,
    DuplicateInteractionsWarning,
    InteractionDataset,
    from_frame,
    load_dataset,
)
from recsys_pref.data import paths

SHARED = Path(os.environ.get("RECSYS_PREF_DATA") or Path(__file__).resolve().parents[2] / "shared" / "datasets")
BUNDLED_SHA256 = {  # from shared/datasets/README.md
    "README.txt": "63d22ac138e80fae37021797ed8e1b9424b5239dc576a137422adf783ae3f404",
    "ratings.csv": "aa289ca83157595d0df6aea1be6a4ded676ddc4385472e8313a8ed9805352646",
    "movies.csv": "5a5f32dd9bb3797b8e728a1b98958789d2b13f294a69fdfbc5727f8a9611aa07",
    "tags.csv": "92a9f8bb7916dceef6151209845788c3643f794dfa79d1feaec7121b5960399d",
    "links.csv": "97ad18e4e56a09363c65676b6cb3482ce3e2cea2372a24620c1599c843325f31",
}


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No network, no user cache or data directory from the machine running the tests."""
    monkeypatch.setenv(paths.OFFLINE_ENV, "1")
    monkeypatch.delenv(paths.DATA_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


def shared_dataset(name: str) -> Path:
    """The shared copy of `name`, or skip the test."""
    directory = SHARED / name
    lacking = paths.missing_files(directory, name)
    if lacking:
        pytest.skip(f"{name} is not available: {directory} lacks {', '.join(lacking)} (set RECSYS_PREF_DATA)")
    return SHARED


def assert_well_formed(dataset: InteractionDataset) -> None:
    assert dataset.interactions.columns == ["user_id", "item_id", "rating", "timestamp"]
    assert dataset.interactions["rating"].dtype == pl.Float64
    assert dataset.interactions["timestamp"].dtype == pl.Int64
    assert dataset.items.columns == ["item_id", "title", "genres", "tags"]
    assert dataset.items.schema["genres"] == pl.List(pl.String) == dataset.items.schema["tags"]
    assert dataset.items["item_id"].to_list() == dataset.item_ids.to_list()
    assert dataset.items["title"].null_count() == 0
    for ids in (dataset.user_ids, dataset.item_ids):
        assert list(ids.external) == sorted(ids.external)
    assert dataset.interactions.n_unique(subset=["user_id", "item_id"]) == dataset.interactions.height


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- the real datasets -------------------------------------------------------------------


@pytest.fixture(scope="module")
def ml_100k() -> InteractionDataset:
    return load_dataset("ml-100k", data_dir=shared_dataset("ml-100k"))


@pytest.fixture(scope="module")
def gowalla() -> InteractionDataset:
    return load_dataset("gowalla", data_dir=shared_dataset("gowalla"))


def test_ml_100k_counts_and_metadata(ml_100k: InteractionDataset) -> None:
    assert (ml_100k.interactions.height, ml_100k.n_users, ml_100k.n_items) == (100_000, 943, 1_682)
    assert ml_100k.positive_threshold == 4.0
    assert ml_100k.positives().height == 34_174 + 21_201
    assert_well_formed(ml_100k)
    toy_story = ml_100k.items.row(0, named=True)
    assert toy_story["title"] == "Toy Story (1995)"
    assert toy_story["genres"] == ["Animation", "Children's", "Comedy"]
    assert not ml_100k.items["genres"].list.contains("unknown").any()


def test_ml_latest_small_counts_and_csv_parsing() -> None:
    dataset = load_dataset("ml-latest-small", data_dir=shared_dataset("ml-latest-small"))
    assert (dataset.interactions.height, dataset.n_users, dataset.n_items) == (100_836, 610, 9_724)
    assert dataset.positives().height == 26_818 + 8_551 + 13_211
    assert_well_formed(dataset)
    items = {row["item_id"]: row for row in dataset.items.iter_rows(named=True)}
    assert items[11]["title"] == "American President, The (1995)"  # quoted comma
    assert items[11]["genres"] == ["Comedy", "Drama", "Romance"]
    assert items[122888]["genres"] == []  # "(no genres listed)"
    assert items[60756]["tags"] == ["comedy", "funny", "highly quotable", "will ferrell"]
    text = dataset.items.select(pl.concat_str("title", pl.col("genres").list.join("|"), pl.col("tags").list.join("|")))
    assert not text.to_series().str.contains("\r").any()


def test_ml_latest_small_is_bundled_unchanged() -> None:
    bundled = paths.BUNDLED_DIR / "ml-latest-small"
    for file, digest in BUNDLED_SHA256.items():
        assert hashlib.sha256((bundled / file).read_bytes()).hexdigest() == digest, file
    assert (paths.BUNDLED_DIR / "NOTICE.md").is_file()
    assert paths.find_dataset_dir("ml-latest-small") == bundled
    assert load_dataset("ml-latest-small").interactions.height == 100_836


def test_gowalla_fixed_split(gowalla: InteractionDataset) -> None:
    assert (gowalla.n_users, gowalla.n_items) == (29_858, 40_981)
    assert (gowalla.interactions.height, gowalla.fixed_test.height) == (810_128, 217_242)
    assert gowalla.positive_threshold is None
    assert_well_formed(gowalla)
    assert (gowalla.interactions["rating"] == 1.0).all()
    assert gowalla.interactions["timestamp"].null_count() == gowalla.interactions.height
    assert gowalla.fixed_test.columns == gowalla.interactions.columns
    assert gowalla.to_csr(gowalla.fixed_test).nnz == 217_242  # every test id is mapped
    assert gowalla.items["title"][0] == "location 8975"


def test_ml_1m_without_ratings_names_the_file_and_where_to_put_it(tmp_path: Path) -> None:
    shared_ml_1m = SHARED / "ml-1m"
    data_dir = SHARED if (shared_ml_1m / "movies.dat").is_file() else tmp_path
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset("ml-1m", data_dir=data_dir)
    message = str(error.value)
    assert isinstance(error.value, FileNotFoundError)
    assert "ratings.dat" in message and str(data_dir / "ml-1m") in message
    assert "RECSYS_PREF_OFFLINE=1" in message and "Put the files in" in message


def test_ml_1m_format(tmp_path: Path) -> None:
    directory = tmp_path / "ml-1m"
    directory.mkdir()
    (directory / "ratings.dat").write_text("1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n")
    (directory / "movies.dat").write_bytes(
        "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
        "1193::One Flew Over the Cuckoo's Nest: Misérables (1975)::Drama\n".encode("latin-1")
    )
    dataset = load_dataset("ml-1m", data_dir=tmp_path)
    assert_well_formed(dataset)
    assert (dataset.n_users, dataset.n_items, dataset.positives().height) == (2, 2, 2)
    assert dataset.items["title"].to_list()[1] == "One Flew Over the Cuckoo's Nest: Misérables (1975)"
    assert dataset.items["genres"].to_list()[0] == ["Animation", "Children's", "Musical"]
    assert dataset.interactions.row(0) == (1, 1193, 5.0, 978300760)


def test_gowalla_ids_only_in_test_are_mapped(tmp_path: Path) -> None:
    directory = tmp_path / "gowalla"
    directory.mkdir()
    write(directory / "train.txt", "0 0 1\n1 1 2\n")
    write(directory / "test.txt", "0 3\n1 0\n2 4\n")
    dataset = load_dataset("gowalla", data_dir=tmp_path)
    assert dataset.user_ids.to_list() == [0, 1, 2]
    assert dataset.item_ids.to_list() == [0, 1, 2, 3, 4]
    assert dataset.items["title"].to_list() == ["0", "1", "2", "3", "4"]
    assert dataset.fixed_test.height == 3


def test_gowalla_is_never_downloaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(paths.OFFLINE_ENV)
    monkeypatch.setattr(paths.urllib.request, "urlopen", _no_network)
    with pytest.raises(DatasetNotFoundError, match="never downloaded") as error:
        load_dataset("gowalla", data_dir=tmp_path)
    assert "train.txt" in str(error.value) and "test.txt" in str(error.value)


def test_threshold_override_and_dataset_arguments(ml_100k: InteractionDataset) -> None:
    loose = load_dataset("ml-100k", data_dir=SHARED, positive_threshold=3.0)
    assert loose.positives().height == ml_100k.positives().height + 27_145
    assert load_dataset("ml-100k", data_dir=SHARED, positive_threshold=None).positives().height == 100_000
    with pytest.raises(TypeError, match="n_users"):
        load_dataset("ml-100k", data_dir=SHARED, n_users=5)


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown dataset 'movielens'") as error:
        load_dataset("movielens")
    assert all(name in str(error.value) for name in DATASET_NAMES)


# --- files --------------------------------------------------------------------------------


def test_csv_tsv_parquet_with_column_options(tmp_path: Path) -> None:
    frame = pl.DataFrame({"u": ["a", "b", "a"], "i": [10, 10, 20], "stars": [5, 2, 4], "t": [3, 1, 2], "extra": ["x"] * 3})
    frame.write_csv(tmp_path / "log.csv")
    frame.write_csv(tmp_path / "log.tsv", separator="\t")
    frame.write_parquet(tmp_path / "log.parquet")
    for suffix in ("csv", "tsv", "parquet"):
        dataset = load_dataset(tmp_path / f"log.{suffix}", user_col="u", item_col="i", rating_col="stars", timestamp_col="t")
        assert_well_formed(dataset)
        assert dataset.name == "log" and dataset.positive_threshold is None
        assert dataset.user_ids.to_list() == ["a", "b"] and dataset.item_ids.to_list() == [10, 20]
        assert dataset.interactions["rating"].to_list() == [5.0, 2.0, 4.0]
    thresholded = load_dataset(str(tmp_path / "log.csv"), user_col="u", item_col="i", rating_col="stars", timestamp_col="t", positive_threshold=4.0)
    assert thresholded.positives().height == 2


def test_file_without_ratings_is_all_positive(tmp_path: Path) -> None:
    path = write(tmp_path / "clicks.csv", "user_id,item_id\n1,2\n1,3\n2,3\n")
    dataset = load_dataset(path)
    assert dataset.positive_threshold is None
    assert dataset.interactions["rating"].to_list() == [1.0, 1.0, 1.0]
    assert dataset.interactions["timestamp"].null_count() == 3
    assert load_dataset(path, rating_col=None, timestamp_col=None).interactions.height == 3


def test_missing_file_and_bad_suffix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset(tmp_path / "absent.csv")
    with pytest.raises(ValueError, match="does not exist"):  # DatasetNotFoundError is both
        load_dataset(tmp_path / "absent.parquet")
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset(tmp_path / "data.xlsx")


def test_missing_columns_are_named(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", "user,item_id,rating\n1,2,4\n")
    with pytest.raises(ValueError, match=r"missing user id column 'user_id'; available columns: user, item_id, rating"):
        load_dataset(path)
    with pytest.raises(ValueError, match=r"missing rating column 'score'"):
        load_dataset(path, user_col="user", rating_col="score")
    with pytest.raises(ValueError, match=r"missing timestamp column 'when'"):
        load_dataset(path, user_col="user", timestamp_col="when")


def test_null_ids_and_nan_ratings_are_counted(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"user id column 'user_id' is null or NaN in 2 row\(s\)"):
        load_dataset(write(tmp_path / "a.csv", "user_id,item_id,rating\n,1,4\n2,1,4\n,3,4\n"))
    with pytest.raises(ValueError, match=r"rating column 'rating' is null or NaN in 2 row\(s\)"):
        load_dataset(write(tmp_path / "b.csv", "user_id,item_id,rating\n1,1,NaN\n2,1,\n3,1,4\n"))
    with pytest.raises(ValueError, match=r"item id column 'item_id' is null or NaN in 1 row\(s\)"):
        from_frame(pl.DataFrame({"user_id": [1, 2], "item_id": [1.0, float("nan")]}))
    with pytest.raises(ValueError, match="ratings must be numbers"):
        load_dataset(write(tmp_path / "c.csv", "user_id,item_id,rating\n1,1,good\n"))


def test_empty_data(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        load_dataset(write(tmp_path / "header_only.csv", "user_id,item_id,rating\n"))
    with pytest.raises(ValueError, match="empty"):
        load_dataset(write(tmp_path / "zero_bytes.csv", ""))
    with pytest.raises(ValueError, match="empty"):
        from_frame(pl.DataFrame({"user_id": [], "item_id": []}))


def test_duplicates_keep_max_rating_and_latest_time(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "user_id,item_id,rating,timestamp\n1,1,2,50\n2,1,3,10\n1,1,5,20\n1,2,1,5\n1,1,4,30\n")
    with pytest.warns(DuplicateInteractionsWarning, match="merged 2 duplicate"):
        dataset = load_dataset(path)
    assert dataset.interactions.rows() == [(1, 1, 5.0, 50), (2, 1, 3.0, 10), (1, 2, 1.0, 5)]


def test_id_types(tmp_path: Path) -> None:
    mixed = load_dataset(write(tmp_path / "m.csv", "user_id,item_id\n1,7\nalice,007\n1,x\n"))
    assert mixed.user_ids.to_list() == ["1", "alice"]
    assert mixed.item_ids.to_list() == ["007", "7", "x"]  # "007" is not merged into 7
    assert mixed.to_csr().nnz == 3
    whole_floats = from_frame(pl.DataFrame({"user_id": [1.0, 2.0], "item_id": ["a", "b"]}))
    assert whole_floats.interactions["user_id"].dtype == pl.Int64
    with pytest.raises(ValueError, match="non-integral"):
        from_frame(pl.DataFrame({"user_id": [1.5, 2.0], "item_id": [1, 2]}))
    objects = pl.DataFrame({"user_id": pl.Series([1, "a"], dtype=pl.Object), "item_id": [1, 2]})
    with pytest.raises(ValueError, match="mixed or Python-object values"):
        from_frame(objects)


def test_from_frame_items_timestamps_and_id_round_trip() -> None:
    frame = pl.DataFrame(
        {
            "user_id": ["u2", "u1", "u2"],
            "item_id": [30, 10, 20],
            "timestamp": [datetime.datetime(2020, 1, 1), None, datetime.datetime(2020, 1, 2)],
        }
    )
    items = pl.DataFrame({"item_id": [20, 10, 99], "title": ["Twenty", None, "Unused"], "tags": [["b"], None, []]})
    dataset = from_frame(frame, name="mine", items=items)
    assert_well_formed(dataset)
    assert dataset.items.rows() == [(10, "10", [], []), (20, "Twenty", [], ["b"]), (30, "30", [], [])]
    assert dataset.interactions["timestamp"].to_list() == [1_577_836_800, None, 1_577_923_200]
    assert dataset.user_ids.to_external(dataset.user_ids.to_index(["u2"])).tolist() == ["u2"]
    with pytest.raises(ValueError, match="duplicates"):
        from_frame(frame, items=pl.DataFrame({"item_id": [10, 10]}))


# --- data directories and downloads ---------------------------------------------------------


def _no_network(*args: object, **kwargs: object) -> None:
    raise AssertionError("the network must not be used")


def _make_ml_100k_zip(tmp_path: Path) -> Path:
    archive = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("ml-100k/u.data", "1\t1\t5\t881250949\n2\t1\t3\t881250950\n")
        out.writestr("ml-100k/u.item", "1|Toy Story (1995)|01-Jan-1995||http://x|0|1\n")
        out.writestr("ml-100k/u.genre", "unknown|0\nAction|1\n\n")
    return archive


def test_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit, from_env = tmp_path / "explicit", tmp_path / "env"
    monkeypatch.setenv(paths.DATA_ENV, str(from_env))
    assert paths.search_roots(explicit) == [explicit, from_env, paths.BUNDLED_DIR, paths.user_cache_dir()]
    assert paths.resolve_data_dir(explicit) == explicit and paths.resolve_data_dir() == from_env
    for root in (from_env, explicit):
        for file in paths.REQUIRED_FILES["ml-latest-small"]:
            (root / "ml-latest-small").mkdir(parents=True, exist_ok=True)
            (root / "ml-latest-small" / file).touch()
        assert paths.find_dataset_dir("ml-latest-small", explicit) == root / "ml-latest-small"


def test_offline_never_downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paths.urllib.request, "urlopen", _no_network)
    with pytest.raises(DatasetNotFoundError, match="no download attempted") as error:
        paths.find_dataset_dir("ml-100k", tmp_path)
    message = str(error.value)
    assert "u.data" in message and str(tmp_path / "ml-100k") in message and str(paths.user_cache_dir()) in message
    assert paths.ARCHIVES["ml-100k"].url in message


def test_download_checks_sha256_and_unpacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _make_ml_100k_zip(tmp_path)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    monkeypatch.delenv(paths.OFFLINE_ENV)
    monkeypatch.setitem(paths.ARCHIVES, "ml-100k", paths.Archive(archive.as_uri(), digest))
    (tmp_path / "empty").mkdir()
    dataset = load_dataset("ml-100k", data_dir=tmp_path / "empty")
    assert dataset.interactions.height == 2 and dataset.items["genres"].to_list() == [["Action"]]
    cache = paths.user_cache_dir()
    assert sorted(p.name for p in cache.iterdir()) == ["ml-100k", "ml-100k.zip"]


def test_checksum_mismatch_deletes_the_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _make_ml_100k_zip(tmp_path)
    monkeypatch.delenv(paths.OFFLINE_ENV)
    monkeypatch.setitem(paths.ARCHIVES, "ml-100k", paths.Archive(archive.as_uri(), "0" * 64))
    with pytest.raises(DatasetNotFoundError, match="checksum mismatch.*downloaded file was deleted"):
        paths.find_dataset_dir("ml-100k", tmp_path / "empty")
    cache = paths.user_cache_dir()
    assert not cache.exists() or list(cache.iterdir()) == []


def test_unreachable_publisher_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(paths.OFFLINE_ENV)
    unreachable = (tmp_path / "nowhere.zip").as_uri()
    monkeypatch.setitem(paths.ARCHIVES, "ml-1m", paths.Archive(unreachable, "0" * 64))
    with pytest.raises(DatasetNotFoundError, match="download from .*nowhere.zip failed"):
        paths.find_dataset_dir("ml-1m", tmp_path)
    assert not list(paths.user_cache_dir().glob(".*.part"))
