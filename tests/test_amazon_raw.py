"""The public Amazon review dumps, written in their real on-disk formats (sidrec/data/amazon_raw.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import assert_bom_accepted, raises_one_line, sequences, write_lines
from sidrec.config import DataConfig
from sidrec.data.amazon_raw import load_amazon_raw
from sidrec.data.loaders import load_dataset
from sidrec.data.text import item_texts
from sidrec.errors import DataError

TEMPLATE = DataConfig().text_template


# (user, asin, time) in file order. With k=3: U4 has 2 reviews and goes; then item d has 2 and goes;
# then U5 has 2 and goes; e only ever had U4. A single filtering pass would keep d and U5.
REVIEWS = [
    ("U2", "b", 5), ("U2", "a", 5), ("U2", "c", 1),  # tie on 5: file order b, a
    ("U1", "c", 30), ("U1", "a", 10), ("U1", "b", 20),
    ("U3", "a", 1), ("U3", "d", 2), ("U3", "b", 3), ("U3", "c", 4),
    ("U4", "d", 1), ("U4", "e", 2),
    ("U5", "d", 1), ("U5", "a", 2), ("U5", "b", 3),
]


def review_lines(reviews=REVIEWS) -> list[str]:
    return [json.dumps({"reviewerID": u, "asin": a, "unixReviewTime": t, "overall": 5.0, "reviewText": "ok"})
            for u, a, t in reviews]


def write_amazon_2014(directory: Path, category: str = "Beauty", meta_extra: list[str] = ()) -> Path:
    write_lines(directory / f"reviews_{category}_5.json.gz", review_lines())
    meta = [
        repr({"asin": "a", "title": "Lip &amp; Cheek", "brand": "Acme", "categories": [["Beauty", "Makeup"]],
              "price": 12.5, "description": "Nice tint.", "related": {"also_bought": ["b"]}, "salesRank": {}}),
        repr({"asin": "b", "title": "Brush", "categories": [["Beauty", "Tools"], ["Beauty", "Brushes"]]}),
        repr({"asin": "c", "title": "Cream", "imUrl": "http://x/y.jpg", "sold": True}),
        repr({"asin": "z", "title": "Not reviewed"}),
        "{'asin': 'e', 'title': this line is broken but e is filtered out",
        *meta_extra,
    ]
    write_lines(directory / f"meta_{category}.json.gz", meta)
    return directory


def test_amazon_2014_iterative_k_core_order_and_text(tmp_path):
    ds = load_amazon_raw(write_amazon_2014(tmp_path), "beauty", min_interactions=3)
    assert ds.user_ids == ["U2", "U1", "U3"]
    assert sequences(ds) == {"U2": ["c", "b", "a"], "U1": ["a", "b", "c"], "U3": ["a", "b", "c"]}
    assert [item["item_id"] for item in ds.items] == ["c", "b", "a"]  # first appearance in the sequences
    by_id = {item["item_id"]: item for item in ds.items}
    assert by_id["a"] == {"item_id": "a", "asin": "a", "title": "Lip &amp; Cheek", "brand": "Acme",
                          "categories": [["Beauty", "Makeup"]], "price": 12.5, "description": "Nice tint."}
    texts = item_texts(ds.items, TEMPLATE)
    assert texts[2] == ("Title: Lip & Cheek | Brand: Acme | Categories: Beauty > Makeup | Price: 12.50 | "
                        "Description: Nice tint.")
    assert texts[1] == "Title: Brush | Categories: Beauty > Tools; Beauty > Brushes"


def test_amazon_k_core_default_5_drops_everything_here(tmp_path):
    with raises_one_line(DataError, "reviews_Beauty_5.json.gz", "5-core"):
        load_amazon_raw(write_amazon_2014(tmp_path), "beauty")


def test_amazon_2018_json_meta(tmp_path):
    write_lines(tmp_path / "Toys_and_Games_5.json.gz", review_lines())
    write_lines(tmp_path / "meta_Toys_and_Games.json.gz", [json.dumps(m) for m in [
        {"asin": "a", "title": "Robot", "brand": "Acme", "category": ["Toys & Games", "Robots"],
         "price": "$1,012.99", "description": ["Walks.", "", "Talks."]},
        {"asin": "a", "title": "Duplicate record of a"},
        {"asin": "b", "title": "Kite", "category": [], "price": "$5.99 - $9.99", "description": []},
        {"asin": "c", "title": "Ball", "price": ".a-box-inner{background-color:#fff;}"},
    ]])
    ds = load_amazon_raw(tmp_path, "toys", min_interactions=3)
    by_id = {item["item_id"]: item for item in ds.items}
    assert by_id["a"] == {"item_id": "a", "asin": "a", "title": "Robot", "brand": "Acme",
                          "categories": [["Toys & Games", "Robots"]], "price": 1012.99,
                          "description": "Walks. Talks."}
    assert by_id["b"] == {"item_id": "b", "asin": "b", "title": "Kite", "price": "$5.99 - $9.99"}
    assert by_id["c"] == {"item_id": "c", "asin": "c", "title": "Ball"}  # page junk is not a price


def test_amazon_picks_the_category_by_name_and_accepts_a_file(tmp_path):
    write_amazon_2014(tmp_path, "Beauty")
    write_amazon_2014(tmp_path, "Sports_and_Outdoors")
    assert load_amazon_raw(tmp_path, "sports", min_interactions=3).num_users == 3
    assert load_amazon_raw(tmp_path / "reviews_Beauty_5.json.gz", "x", min_interactions=3).num_users == 3
    with raises_one_line(DataError, "reviews_Beauty_5.json.gz", "reviews_Sports_and_Outdoors_5.json.gz", "toys"):
        load_amazon_raw(tmp_path, "toys", min_interactions=3)


@pytest.mark.parametrize(
    "bad_line, fragments",
    [
        ("{not json", [":16", "not valid JSON"]),
        (json.dumps({"reviewerID": "U9", "unixReviewTime": 3}), [":16", "'asin'"]),
        (json.dumps({"reviewerID": "U9", "asin": "a", "unixReviewTime": "yesterday"}), [":16", "'yesterday'"]),
        ("[1, 2]", [":16", "JSON object"]),
    ],
    ids=["malformed", "missing asin", "bad time", "not an object"],
)
def test_amazon_bad_review_lines(tmp_path, bad_line, fragments):
    write_amazon_2014(tmp_path)
    write_lines(tmp_path / "reviews_Beauty_5.json.gz", review_lines() + [bad_line])
    with raises_one_line(DataError, "reviews_Beauty_5.json.gz", *fragments):
        load_amazon_raw(tmp_path, "beauty", min_interactions=3)


def test_amazon_bad_meta_and_missing_files(tmp_path):
    write_amazon_2014(tmp_path, meta_extra=["{'asin': 'a', 'title': 'unterminated"])
    with raises_one_line(DataError, "meta_Beauty.json.gz:6", "dict literal"):
        load_amazon_raw(tmp_path, "beauty", min_interactions=3)
    (tmp_path / "meta_Beauty.json.gz").unlink()
    with raises_one_line(DataError, "reviews_Beauty_5.json.gz", "meta_Beauty.json.gz"):
        load_amazon_raw(tmp_path, "beauty", min_interactions=3)
    write_lines(tmp_path / "meta_Beauty.json.gz", [])
    write_lines(tmp_path / "reviews_Beauty_5.json.gz", [])
    with raises_one_line(DataError, "reviews_Beauty_5.json.gz", "empty"):
        load_amazon_raw(tmp_path, "beauty")
    (tmp_path / "reviews_Beauty_5.json.gz").write_bytes(b"\x1f\x8b truncated")
    with raises_one_line(DataError, "reviews_Beauty_5.json.gz", "unreadable"):
        load_amazon_raw(tmp_path, "beauty")
    with raises_one_line(DataError, "empty_dir", "no Amazon review file"):
        load_amazon_raw((tmp_path / "empty_dir").mkdir() or tmp_path / "empty_dir", "beauty")


def test_amazon_dispatch_passes_min_interactions(tmp_path):
    write_amazon_2014(tmp_path)
    cfg = DataConfig(format="amazon_raw", path=str(tmp_path), name="beauty", min_interactions=3)
    assert load_dataset(cfg).num_interactions == 9


def write_amazon_dir(directory: Path) -> DataConfig:
    write_amazon_2014(directory)
    return DataConfig(format="amazon_raw", path=str(directory), name="beauty", min_interactions=3)


def test_a_byte_order_mark_is_accepted(tmp_path):
    assert_bom_accepted(tmp_path, write_amazon_dir)
