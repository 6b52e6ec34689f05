"""The format dispatcher, the bundled dataset and the P5 loader (sidrec/data/loaders.py)."""

from __future__ import annotations

import gzip
import json

import pytest

from conftest import assert_bom_accepted, raises_one_line, sequences, write_lines
from sidrec.config import DataConfig
from sidrec.data.loaders import load_dataset, load_p5
from sidrec.errors import ConfigError, DataError


# --- bundled Beauty ---------------------------------------------------------------------------------
def test_bundled_beauty_matches_published_statistics():
    ds = load_dataset(DataConfig())
    assert (ds.num_users, ds.num_items, ds.num_interactions) == (22_363, 12_101, 198_502)
    assert ds.items[0]["item_id"] == "1" and ds.items[0]["asin"] == "B004756YJA"
    assert sequences(ds)["1"] == ["1", "2", "3", "4", "5"]
    assert ds.stats()["items_with_text"] == 12_101


def test_unknown_bundled_name_and_format_are_config_errors(tmp_path):
    with raises_one_line(ConfigError, "sports", "not bundled"):
        load_dataset(DataConfig(name="sports"))
    with raises_one_line(ConfigError, "data.format='csv'", "table"):
        load_dataset(DataConfig(format="csv", path=str(tmp_path)))
    with raises_one_line(ConfigError, "data.format=p5", "data.path"):
        load_dataset(DataConfig(format="p5"))


# --- P5 ---------------------------------------------------------------------------------------------
def test_p5_directory_with_item_table(tmp_path):
    write_lines(tmp_path / "sequences.txt", ["1 3 1 2", "2 2 3 1 3"])
    write_lines(tmp_path / "items.jsonl", [
        json.dumps({"item_id": 1, "asin": "B1", "title": "One"}),
        json.dumps({"item_id": 2, "title": "Two", "brand": ""}),
        json.dumps({"item_id": 3, "title": "Three", "categories": [["A", "B"]]}),
    ])
    ds = load_dataset(DataConfig(format="p5", path=str(tmp_path), name="toy"))
    assert ds.user_ids == ["1", "2"]
    assert sequences(ds) == {"1": ["3", "1", "2"], "2": ["2", "3", "1", "3"]}
    assert [item["item_id"] for item in ds.items] == ["1", "2", "3"]  # item table order
    assert ds.items[1] == {"item_id": "2", "title": "Two"}  # empty fields dropped


def test_p5_single_file_numbers_items_numerically(tmp_path):
    path = write_lines(tmp_path / "seq.txt.gz", ["7 10 9 2", "8 2 10 9"])
    ds = load_p5(path, "toy")
    assert [item["item_id"] for item in ds.items] == ["2", "9", "10"]
    assert sequences(ds)["7"] == ["10", "9", "2"]


@pytest.mark.parametrize(
    "lines, fragments",
    [
        (["1 2 3 4", "2 5 x 6"], ["seq.txt:2", "'x'", "integer"]),
        (["1 2 3 4", "2"], ["seq.txt:2", "'2'", "no items"]),
        (["1 2 3 4", "1 5 6 7"], ["seq.txt:2", "'1'", "line 1"]),
        (["1 2 3 4", "2 5 6"], ["seq.txt", "'2'", "2 interactions"]),
        ([], ["seq.txt", "empty"]),
    ],
    ids=["non-integer id", "user without items", "duplicate user", "short sequence", "empty file"],
)
def test_p5_bad_sequence_files(tmp_path, lines, fragments):
    path = write_lines(tmp_path / "seq.txt", lines)
    with raises_one_line(DataError, *fragments):
        load_p5(path, "toy")


@pytest.mark.parametrize(
    "item_lines, fragments",
    [
        ([json.dumps({"item_id": 1}), json.dumps({"item_id": 2})], ["sequences.txt", "unknown item '3'"]),
        ([json.dumps({"item_id": 1}), json.dumps({"item_id": 1})], ["items.jsonl:2", "duplicate", "'1'"]),
        ([json.dumps({"item_id": 1}), "{not json"], ["items.jsonl:2", "JSON"]),
        ([json.dumps({"id": 1})], ["items.jsonl:1", "item_id"]),
        ([], ["items.jsonl", "empty"]),
        ([json.dumps({"item_id": 1}), json.dumps({"item_id": 2}), json.dumps({"item_id": "three"})],
         ["items.jsonl:3", "item_id 'three'", "integer"]),
    ],
    ids=["unknown item", "duplicate item id", "malformed line", "missing item_id", "empty file", "non-integer id"],
)
def test_p5_bad_item_tables(tmp_path, item_lines, fragments):
    write_lines(tmp_path / "sequences.txt", ["1 1 2 3"])
    write_lines(tmp_path / "items.jsonl", item_lines)
    with raises_one_line(DataError, *fragments):
        load_p5(tmp_path, "toy")


def test_p5_missing_paths(tmp_path):
    with raises_one_line(DataError, str(tmp_path), "sequences.txt"):
        load_p5(tmp_path, "toy")
    with raises_one_line(DataError, "nope", "no such"):
        load_p5(tmp_path / "nope", "toy")


def test_undecodable_or_truncated_p5_files_are_one_line_naming_file_and_line(tmp_path):
    path = tmp_path / "seq.txt"
    path.write_bytes(b"1 2 3 4\n2 5 6 7\n3 \xff\xfe 8\n")
    with raises_one_line(DataError, "seq.txt:3", "unreadable"):
        load_p5(path, "toy")
    gz = tmp_path / "sequences.txt.gz"
    gz.write_bytes(gzip.compress(("".join(f"{u} 1 2 3\n" for u in range(1, 2000))).encode())[:-20])
    with raises_one_line(DataError, "sequences.txt.gz:", "unreadable"):
        load_p5(tmp_path, "toy")


def write_p5_dir(directory: Path) -> DataConfig:
    write_lines(directory / "sequences.txt", ["1 3 1 2", "2 2 3 1 3"])
    write_lines(directory / "items.jsonl", [json.dumps({"item_id": i, "title": f"t{i}"}) for i in (1, 2, 3)])
    return DataConfig(format="p5", path=str(directory), name="toy")


def test_a_byte_order_mark_is_accepted(tmp_path):
    assert_bom_accepted(tmp_path, write_p5_dir)
