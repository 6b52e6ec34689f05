"""What every format loader shares: reading plain or gzipped text and JSON lines, the items.jsonl
item table, grouping interactions into per-user sequences, and external ids -> Dataset.

The format loaders (loaders.py for bundled/p5, amazon_raw.py, tables.py) import this module and
dataset.py, never each other.
"""

from __future__ import annotations

import codecs
import gzip
import json
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from sidrec.data.dataset import ITEM_TEXT_FIELDS, Dataset, from_sequences
from sidrec.errors import DataError, brief

def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of a plain or gzipped UTF-8 file; a leading byte-order mark (Windows
    editors) is dropped. Lines are decoded one by one, so a bad byte or a truncated gzip is
    reported at its own line, in one message naming the file."""
    lineno = 0
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                    raw = raw[len(codecs.BOM_UTF8):]
                yield lineno, raw.decode("utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}:{lineno}: unreadable: not UTF-8 text (byte {exc.object[exc.start]:#04x} "
                        f"at column {exc.start + 1})") from None
    except (OSError, EOFError) as exc:  # truncated gzip, binary junk
        raise DataError(f"{path}:{lineno + 1}: unreadable ({' '.join(str(exc).split())})") from None


def iter_json_lines(path: Path):
    """(line number, object) for every non-empty line of a JSON-lines file, plain or .gz."""
    for lineno, line in read_lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj


def read_items_jsonl(path: Path, integer_ids: bool = False) -> dict[str, dict]:
    """items.jsonl: one object per item with ``item_id`` and optional text fields / ``asin``;
    ``integer_ids``: every ``item_id`` a non-negative integer (the P5 sequences' ids are)."""
    items: dict[str, dict] = {}
    for lineno, obj in iter_json_lines(path):
        if "item_id" not in obj:
            raise DataError(f"{path}:{lineno}: missing field 'item_id'")
        item_id = str(obj["item_id"])
        if integer_ids and not item_id.isdigit():
            raise DataError(f"{path}:{lineno}: item_id {brief(obj['item_id'])} is not a non-negative integer "
                            "(the sequences name items by integer ids)")
        if item_id in items:
            raise DataError(f"{path}:{lineno}: duplicate item_id {item_id!r}")
        item = {"item_id": item_id}
        for key in ("asin", *ITEM_TEXT_FIELDS):
            if obj.get(key) not in (None, "", []):
                item[key] = obj[key]
        items[item_id] = item
    if not items:
        raise DataError(f"{path}: empty item file")
    return items


def order_sequences(users: list[str], items: list[str], times: np.ndarray | None) -> tuple[list[str], list[list[str]]]:
    """Group interactions by user (users in order of first appearance), each user's items sorted by
    time; the sort is stable, so equal or missing timestamps keep file order."""
    user_codes, user_ids = pd.factorize(np.asarray(users, dtype=object))
    rows = np.arange(len(users))
    order = np.lexsort((rows, times, user_codes)) if times is not None else np.lexsort((rows, user_codes))
    ordered_items = np.asarray(items, dtype=object)[order]
    bounds = np.cumsum(np.bincount(user_codes))[:-1]
    return [str(u) for u in user_ids], [list(seq) for seq in np.split(ordered_items, bounds)]


def build_dataset(name: str, users: list[str], sequences: list[list[str]], items: dict[str, dict] | None,
                  source: str) -> Dataset:
    """Map external item ids to dense indices. Without an item table, items are those in the
    sequences (sorted numerically when they are integers); with one, every sequence item must be in it."""
    if items is None:
        ids = sorted({i for s in sequences for i in s}, key=lambda x: (len(x), x) if x.isdigit() else (0, x))
        items = {i: {"item_id": i} for i in ids}
    index = {item_id: k for k, item_id in enumerate(items)}
    encoded = []
    for user, seq in zip(users, sequences):
        try:
            encoded.append(np.fromiter((index[i] for i in seq), dtype=np.int64, count=len(seq)))
        except KeyError as exc:
            raise DataError(f"{source}: user {user!r} references unknown item {exc.args[0]!r}") from None
    ds = from_sequences(name, list(items.values()), users, encoded)
    ds.validate(source)
    return ds
