"""The users file of `recsys-pref recommend` and `recsys-pref batch recommend`
(batch.recommend.read_user_ids): its ids as text, and a clear error for a file naming no user."""
from pathlib import Path

import polars as pl
import pytest

from recsys_pref.batch.recommend import read_user_ids


def test_a_text_file_gives_one_id_per_line_without_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "users.txt"
    path.write_text("7\n\n  alice \n")
    assert read_user_ids(path) == ["7", "alice"]


@pytest.mark.parametrize("suffix", [".csv", ".CSV", ".parquet"])
def test_a_table_gives_its_user_id_column_as_text(suffix: str, tmp_path: Path) -> None:
    frame = pl.DataFrame({"user_id": [3, 1], "rating": [5, 4]})
    path = tmp_path / f"users{suffix}"
    frame.write_parquet(path) if suffix == ".parquet" else frame.write_csv(path)
    assert read_user_ids(path) == ["3", "1"]


@pytest.mark.parametrize("name, text", [("users.txt", "\n \n"), ("users.csv", "user_id\n")])
def test_a_file_that_lists_no_user_is_refused(name: str, text: str, tmp_path: Path) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match="lists no user"):
        read_user_ids(tmp_path / name)


def test_an_empty_user_id_is_refused(tmp_path: Path) -> None:
    (tmp_path / "users.csv").write_text("user_id,rating\n1,5\n,4\n")
    with pytest.raises(ValueError, match="user_id has empty values"):
        read_user_ids(tmp_path / "users.csv")
