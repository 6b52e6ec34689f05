"""RecBole atomic files and CSV/Parquet tables (sidrec/data/tables.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import assert_bom_accepted, raises_one_line, sequences, write_lines
from sidrec.config import DataConfig
from sidrec.data.loaders import load_dataset
from sidrec.data.tables import load_recbole, load_table
from sidrec.errors import DataError


# --- RecBole atomic files ---------------------------------------------------------------------------
INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"


def write_recbole(directory: Path, inter_rows: list[str], item_rows: list[str] | None = None,
                  name: str = "toy") -> Path:
    write_lines(directory / f"{name}.inter", [INTER_HEADER, *inter_rows])
    if item_rows is not None:
        header = "item_id:token\ttitle:token_seq\tcategories:token_seq\tbrand:token\tprice:float\tsales_rank:float"
        write_lines(directory / f"{name}.item", [header, *item_rows])
    return directory


RECBOLE_INTER = ["u2\ti3\t5\t300", "u1\ti1\t4\t200", "u1\ti2\t3\t100", "u2\ti1\t5\t100",
                 "u1\ti3\t1\t100", "u2\ti2\t2\t50"]
RECBOLE_ITEMS = ["i1\tRed Lipstick\tBeauty Makeup\tAcme\t9.5\t12", "i2\tBrush\t\t\t\t", "i3\tCream\tBeauty\t\t3\t"]


def test_recbole_orders_by_timestamp_and_reads_item_fields(tmp_path):
    ds = load_dataset(DataConfig(format="recbole", name="toy",
                                 path=str(write_recbole(tmp_path, RECBOLE_INTER, RECBOLE_ITEMS))))
    assert ds.user_ids == ["u2", "u1"]
    assert sequences(ds) == {"u2": ["i2", "i1", "i3"], "u1": ["i2", "i3", "i1"]}  # tie at 100: file order
    assert ds.items == [
        {"item_id": "i1", "title": "Red Lipstick", "categories": "Beauty Makeup", "brand": "Acme", "price": 9.5},
        {"item_id": "i2", "title": "Brush"},
        {"item_id": "i3", "title": "Cream", "categories": "Beauty", "price": 3.0},
    ]


def test_recbole_without_timestamp_or_item_file_keeps_file_order(tmp_path):
    write_lines(tmp_path / "toy.inter", ["user_id:token\titem_id:token", "u1\t5", "u1\t3", "u1\t4"])
    ds = load_recbole(tmp_path / "toy.inter", "toy")
    assert sequences(ds) == {"u1": ["5", "3", "4"]}
    assert [item["item_id"] for item in ds.items] == ["3", "4", "5"]


@pytest.mark.parametrize(
    "inter_rows, item_rows, fragments",
    [
        (["u1\ti1\t5\tnoon", *RECBOLE_INTER], None, ["toy.inter:2", "timestamp", "'noon'"]),
        (["u1\ti1\t5", *RECBOLE_INTER], None, ["toy.inter:2", "3 tab-separated fields", "header has 4"]),
        (RECBOLE_INTER + ["u3\ti9\t1\t1"], RECBOLE_ITEMS, ["toy.inter:8", "'i9'", "toy.item"]),
        (RECBOLE_INTER, RECBOLE_ITEMS + ["i1\tAgain\t\t\t\t"], ["toy.item:5", "duplicate", "'i1'"]),
        (RECBOLE_INTER, ["i1\tRed\t\t\tcheap\t"], ["toy.item:2", "price", "'cheap'"]),
        (RECBOLE_INTER + ["u3\ti1\t1\t1", "u3\ti2\t1\t2"], None, ["toy.inter", "'u3'", "2 interactions"]),
        ([], None, ["toy.inter", "no interactions"]),
    ],
    ids=["bad timestamp", "short row", "unknown item", "duplicate item", "bad price", "short user", "empty"],
)
def test_recbole_bad_inputs(tmp_path, inter_rows, item_rows, fragments):
    write_recbole(tmp_path, inter_rows, item_rows)
    with raises_one_line(DataError, *fragments):
        load_recbole(tmp_path, "toy")


def test_recbole_bad_headers_and_paths(tmp_path):
    write_lines(tmp_path / "toy.inter", ["user_id:token\titem:token", "u1\ti1"])
    with raises_one_line(DataError, "toy.inter", "missing column 'item_id'"):
        load_recbole(tmp_path, "toy")
    write_lines(tmp_path / "toy.inter", ["user_id\titem_id:token"])
    with raises_one_line(DataError, "toy.inter:1", "'user_id'", "name:type"):
        load_recbole(tmp_path, "toy")
    write_lines(tmp_path / "toy.inter", [])
    with raises_one_line(DataError, "toy.inter", "empty"):
        load_recbole(tmp_path, "toy")
    write_lines(tmp_path / "other.inter", [])
    with raises_one_line(DataError, "no beauty.inter", "other.inter", "toy.inter"):
        load_recbole(tmp_path, "beauty")


# --- CSV / Parquet tables ---------------------------------------------------------------------------
INTERACTIONS = pd.DataFrame({
    "user_id": ["007", "007", "b", "007", "b", "b"],
    "item_id": ["x", "y", "y", "z", "z", "x"],
    "timestamp": [3, 1, 10, 2, 10, 5],
})
ITEMS = pd.DataFrame({
    "item_id": ["z", "y", "x"],
    "title": ["Zed", "Why", "Ex"],
    "price": ["$1,200.00", "", "3"],
    "brand": ["", "Acme", None],
})


def test_csv_directory_with_item_table(tmp_path):
    INTERACTIONS.to_csv(tmp_path / "interactions.csv", index=False)
    ITEMS.to_csv(tmp_path / "items.csv", index=False)
    ds = load_dataset(DataConfig(format="table", path=str(tmp_path), name="toy"))
    assert ds.user_ids == ["007", "b"]  # ids stay strings
    assert sequences(ds) == {"007": ["y", "z", "x"], "b": ["x", "y", "z"]}  # tie at 10: file order
    assert ds.items == [{"item_id": "z", "title": "Zed", "price": 1200.0},
                        {"item_id": "y", "title": "Why", "brand": "Acme"},
                        {"item_id": "x", "title": "Ex", "price": 3.0}]


def test_parquet_directory_with_list_categories_and_datetimes(tmp_path):
    interactions = INTERACTIONS.assign(
        user_id=[7, 7, 8, 7, 8, 8],
        timestamp=pd.to_datetime(INTERACTIONS["timestamp"], unit="D", origin="2020-01-01"),
    )
    interactions.to_parquet(tmp_path / "interactions.parquet")
    ITEMS.assign(categories=[[["Toys", "Robots"]], [], None]).to_parquet(tmp_path / "items.parquet")
    ds = load_table(tmp_path, "toy")
    assert sequences(ds) == {"7": ["y", "z", "x"], "8": ["x", "y", "z"]}
    assert ds.items[0]["categories"] == [["Toys", "Robots"]] and "categories" not in ds.items[1]
    ds.content_hash()  # plain Python values: JSON-serialisable


def test_single_csv_file_with_iso_dates_and_jsonl_items(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,timestamp\nu,b,2021-03-01T10:00:00\nu,a,2021-01-01\nu,c,2021-03-01 09:00\n")
    assert sequences(load_table(path, "toy")) == {"u": ["a", "c", "b"]}
    path.rename(tmp_path / "interactions.csv")
    write_lines(tmp_path / "items.jsonl", [json.dumps({"item_id": i, "title": i.upper()}) for i in "abc"])
    assert load_table(tmp_path, "toy").items[0] == {"item_id": "a", "title": "A"}


def test_table_without_timestamp_keeps_file_order(tmp_path):
    INTERACTIONS.drop(columns="timestamp").to_csv(tmp_path / "interactions.csv", index=False)
    assert sequences(load_table(tmp_path, "toy")) == {"007": ["x", "y", "z"], "b": ["y", "z", "x"]}


@pytest.mark.parametrize(
    "interactions, items, fragments",
    [
        ("user_id,item\nu,a\n", None, ["interactions.csv", "missing column 'item_id'"]),
        ("user_id,item_id,timestamp\nu,a,1\nu,b,2\nu,c,soon\n", None, ["interactions.csv:4", "'soon'"]),
        ("user_id,item_id,timestamp\nu,a,2021-01-01\nu,b,someday\n", None, ["interactions.csv:3", "'someday'"]),
        ("user_id,item_id\nu,a\n,b\n", None, ["interactions.csv:3", "empty user_id"]),
        ("user_id,item_id\nu,a\nu,b\nu,q\n", "item_id,title\na,A\nb,B\n", ["interactions.csv:4", "'q'", "items.csv"]),
        ("user_id,item_id\nu,a\nu,b\nu,a\n", "item_id,title\na,A\nb,B\na,C\n", ["items.csv:4", "duplicate", "'a'"]),
        ("user_id,item_id\nu,a\nu,b\nu,a\n", "title\nA\n", ["items.csv", "missing column 'item_id'"]),
        ("user_id,item_id\nu,a\nu,b\nv,a\nv,b\nv,a\n", None, ["interactions.csv", "'u'", "2 interactions"]),
        ("", None, ["interactions.csv", "empty"]),
        ("user_id,item_id\n", None, ["interactions.csv", "no interactions"]),
    ],
    ids=["missing column", "bad number", "bad date", "empty id", "unknown item", "duplicate item",
         "items without item_id", "short user", "empty file", "header only"],
)
def test_table_bad_inputs(tmp_path, interactions, items, fragments):
    (tmp_path / "interactions.csv").write_text(interactions)
    if items is not None:
        (tmp_path / "items.csv").write_text(items)
    with raises_one_line(DataError, *fragments):
        load_table(tmp_path, "toy")


def test_table_bad_paths_and_parquet_rows(tmp_path):
    with raises_one_line(DataError, "nope", "no such"):
        load_table(tmp_path / "nope", "toy")
    with raises_one_line(DataError, str(tmp_path), "interactions.csv"):
        load_table(tmp_path, "toy")
    (tmp_path / "log.json").write_text("{}")
    with raises_one_line(DataError, "log.json", "unsupported"):
        load_table(tmp_path / "log.json", "toy")
    pd.DataFrame({"user_id": ["u", "u", "u"], "item_id": ["a", None, "c"]}).to_parquet(tmp_path / "i.parquet")
    with raises_one_line(DataError, "i.parquet: row 2", "empty item_id"):
        load_table(tmp_path / "i.parquet", "toy")


def write_recbole_dir(directory: Path) -> DataConfig:
    write_recbole(directory, RECBOLE_INTER, RECBOLE_ITEMS)
    return DataConfig(format="recbole", path=str(directory), name="toy")


def write_csv_dir(directory: Path) -> DataConfig:
    INTERACTIONS.to_csv(directory / "interactions.csv", index=False)
    ITEMS.to_csv(directory / "items.csv", index=False)
    return DataConfig(format="table", path=str(directory), name="toy")


@pytest.mark.parametrize("write", [write_recbole_dir, write_csv_dir], ids=["recbole", "table"])
def test_a_byte_order_mark_is_accepted(tmp_path, write):
    assert_bom_accepted(tmp_path, write)
