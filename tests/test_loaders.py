"""Dataset loaders and item text: fixtures written in each source's real on-disk format."""

from __future__ import annotations

import contextlib
import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from sidrec.config import DataConfig
from sidrec.data.amazon_raw import load_amazon_raw
from sidrec.data.loaders import load_dataset, load_p5
from sidrec.data.tables import load_recbole, load_table
from sidrec.data.text import item_texts, render
from sidrec.errors import ConfigError, DataError

TEMPLATE = DataConfig().text_template


def sequences(ds) -> dict[str, list[str]]:
    """user id -> external item ids, in order."""
    return {user: [ds.items[i]["item_id"] for i in ds.sequence(u)] for u, user in enumerate(ds.user_ids)}


@contextlib.contextmanager
def raises_one_line(error, *fragments: str):
    """The block raises ``error`` with a one-line message that contains every fragment."""
    with pytest.raises(error) as info:
        yield info
    message = str(info.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def write_lines(path: Path, lines: list[str]) -> Path:
    text = "".join(line + "\n" for line in lines)
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


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
    ],
    ids=["unknown item", "duplicate item id", "malformed line", "missing item_id", "empty file"],
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


# --- item text --------------------------------------------------------------------------------------
def test_render_skips_segments_of_missing_fields_and_cleans_values():
    item = {
        "item_id": "1",
        "title": "Lip &amp;amp; Cheek\n  Tint",
        "categories": [["Beauty", "Makeup"], ["Beauty", "Makeup"], ["Sale"]],
        "price": 12.5,
    }
    assert render(item, TEMPLATE) == "Title: Lip & Cheek Tint | Categories: Beauty > Makeup; Sale | Price: 12.50"
    assert render(item, TEMPLATE, max_chars=10) == "Title: Lip"


def test_item_texts_errors_and_id_fallback():
    items = [{"item_id": "1", "title": "A"}, {"item_id": "2", "asin": "B2"}]
    with raises_one_line(ConfigError, "colour"):
        item_texts(items, "Title: {title} | Colour: {colour}")
    with raises_one_line(DataError, "1 of 2 items", "'2'", "data.missing_text=id"):
        item_texts(items, TEMPLATE)
    with pytest.warns(UserWarning, match="1 of 2 items"):
        assert item_texts(items, TEMPLATE, missing_text="id") == ["Title: A", "item B2"]
    with raises_one_line(ConfigError, "missing_text"):
        item_texts(items, TEMPLATE, missing_text="drop")


# --- Amazon raw dumps -------------------------------------------------------------------------------
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



# --- encodings ----------------------------------------------------------------------------------------
def add_bom(directory: Path) -> None:
    """Prefixes every file with the UTF-8 byte-order mark some Windows editors write."""
    for path in directory.iterdir():
        if path.suffix == ".gz":
            path.write_bytes(gzip.compress(b"\xef\xbb\xbf" + gzip.decompress(path.read_bytes())))
        else:
            path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())


def write_p5_dir(directory: Path) -> DataConfig:
    write_lines(directory / "sequences.txt", ["1 3 1 2", "2 2 3 1 3"])
    write_lines(directory / "items.jsonl", [json.dumps({"item_id": i, "title": f"t{i}"}) for i in (1, 2, 3)])
    return DataConfig(format="p5", path=str(directory), name="toy")


def write_amazon_dir(directory: Path) -> DataConfig:
    write_amazon_2014(directory)
    return DataConfig(format="amazon_raw", path=str(directory), name="beauty", min_interactions=3)


def write_recbole_dir(directory: Path) -> DataConfig:
    write_recbole(directory, RECBOLE_INTER, RECBOLE_ITEMS)
    return DataConfig(format="recbole", path=str(directory), name="toy")


def write_csv_dir(directory: Path) -> DataConfig:
    INTERACTIONS.to_csv(directory / "interactions.csv", index=False)
    ITEMS.to_csv(directory / "items.csv", index=False)
    return DataConfig(format="table", path=str(directory), name="toy")


@pytest.mark.parametrize("write", [write_p5_dir, write_amazon_dir, write_recbole_dir, write_csv_dir],
                         ids=["p5", "amazon_raw", "recbole", "table"])
def test_a_byte_order_mark_is_accepted_in_every_format(tmp_path, write):
    plain, marked = tmp_path / "plain", tmp_path / "bom"
    plain.mkdir()
    marked.mkdir()
    expected = load_dataset(write(plain))
    cfg = write(marked)
    add_bom(marked)
    ds = load_dataset(cfg)
    assert (ds.user_ids, ds.items, sequences(ds)) == (expected.user_ids, expected.items, sequences(expected))


def test_undecodable_or_truncated_p5_files_are_one_line_naming_file_and_line(tmp_path):
    path = tmp_path / "seq.txt"
    path.write_bytes(b"1 2 3 4\n2 5 6 7\n3 \xff\xfe 8\n")
    with raises_one_line(DataError, "seq.txt:3", "unreadable"):
        load_p5(path, "toy")
    gz = tmp_path / "sequences.txt.gz"
    gz.write_bytes(gzip.compress(("".join(f"{u} 1 2 3\n" for u in range(1, 2000))).encode())[:-20])
    with raises_one_line(DataError, "sequences.txt.gz:", "unreadable"):
        load_p5(tmp_path, "toy")
