"""The readers every format loader shares (sidrec/data/readers.py)."""

from __future__ import annotations

import gzip
import json

import numpy as np

from conftest import raises_one_line, sequences, write_lines
from sidrec.data.readers import build_dataset, iter_json_lines, order_sequences, read_items_jsonl, read_lines
from sidrec.errors import DataError


def test_read_lines_plain_gzip_and_byte_order_mark(tmp_path):
    plain = tmp_path / "a.txt"
    plain.write_bytes(b"\xef\xbb\xbfone\ntwo\n")
    packed = tmp_path / "a.txt.gz"
    packed.write_bytes(gzip.compress(b"\xef\xbb\xbfone\ntwo\n"))
    assert list(read_lines(plain)) == list(read_lines(packed)) == [(1, "one\n"), (2, "two\n")]


def test_read_lines_errors_name_file_and_line(tmp_path):
    with raises_one_line(DataError, "nope.txt", "no such file"):
        list(read_lines(tmp_path / "nope.txt"))
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\n\xff\n")
    with raises_one_line(DataError, "bad.txt:2", "not UTF-8", "0xff", "column 1"):
        list(read_lines(bad))
    truncated = tmp_path / "t.txt.gz"
    truncated.write_bytes(gzip.compress(b"x\n" * 5000)[:-20])
    with raises_one_line(DataError, "t.txt.gz:", "unreadable"):
        list(read_lines(truncated))


def test_iter_json_lines_skips_blank_lines_and_wants_objects(tmp_path):
    path = write_lines(tmp_path / "a.jsonl", [json.dumps({"a": 1}), "", json.dumps({"b": 2})])
    assert list(iter_json_lines(path)) == [(1, {"a": 1}), (3, {"b": 2})]
    write_lines(path, ["{not json"])
    with raises_one_line(DataError, "a.jsonl:1", "not valid JSON"):
        list(iter_json_lines(path))
    write_lines(path, ["[1]"])
    with raises_one_line(DataError, "a.jsonl:1", "JSON object", "list"):
        list(iter_json_lines(path))


def test_read_items_jsonl_keeps_id_asin_and_non_empty_text_fields(tmp_path):
    path = write_lines(tmp_path / "items.jsonl.gz", [
        json.dumps({"item_id": 7, "asin": "B7", "title": "Seven", "brand": "", "rating": 5}),
        json.dumps({"item_id": "x", "categories": []}),
    ])
    assert read_items_jsonl(path) == {"7": {"item_id": "7", "asin": "B7", "title": "Seven"}, "x": {"item_id": "x"}}


def test_order_sequences_groups_by_first_appearance_and_sorts_stably():
    users, seqs = order_sequences(["b", "a", "b", "a", "b"], ["1", "2", "3", "4", "5"], np.array([2, 9, 1, 3, 2]))
    assert (users, seqs) == (["b", "a"], [["3", "1", "5"], ["4", "2"]])  # tie at 2: file order
    assert order_sequences(["b", "a", "b"], ["1", "2", "3"], None) == (["b", "a"], [["1", "3"], ["2"]])


def test_build_dataset_numbers_integer_ids_numerically_and_checks_the_item_table():
    ds = build_dataset("toy", ["u"], [["10", "9", "2"]], None, "src")
    assert [item["item_id"] for item in ds.items] == ["2", "9", "10"]
    assert sequences(ds) == {"u": ["10", "9", "2"]}
    with raises_one_line(DataError, "src", "'u'", "unknown item '3'"):
        build_dataset("toy", ["u"], [["1", "2", "3"]], {"1": {"item_id": "1"}, "2": {"item_id": "2"}}, "src")
