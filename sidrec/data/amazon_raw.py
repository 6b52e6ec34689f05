"""The public Amazon review dumps -> Dataset, preprocessed as in P5/TIGER.

Two releases are read:

- 2014 (McAuley et al.): ``reviews_<Category>_5.json.gz`` (JSON lines) and ``meta_<Category>.json.gz``
  (one *Python dict literal* per line) with title, brand, categories (list of lists), price (float),
  description (string).
- 2018 (Ni et al.): ``<Category>_5.json.gz`` (JSON lines) and ``meta_<Category>.json.gz`` (JSON lines)
  with title, brand, category (flat list), price (string like "$12.99"), description (list of strings).

Steps: iterative k-core on the reviews (every user and item keeps >= min_interactions), each user's
reviews ordered by unixReviewTime (ties keep file order), users in order of first appearance among
the kept reviews, items in order of first appearance in the resulting sequences (user by user).
Items missing from the meta file keep only their id (see data.missing_text).
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from sidrec.data.dataset import Dataset
from sidrec.data.readers import build_dataset, iter_json_lines, order_sequences, read_lines
from sidrec.errors import DataError

REVIEW_FILE = re.compile(r"^(?:reviews_)?(?P<category>.+)_5\.json(?:\.gz)?$")
REVIEW_FIELDS = ("reviewerID", "asin", "unixReviewTime")
# The asin of a meta line, found without parsing it, so lines of filtered-out items are skipped
# cheaply (a 2014 meta file has ~10x more items than its 5-core, and literal_eval is slow).
_META_ASIN = re.compile(r"""["']asin["']\s*:\s*["']([^"']+)["']""")
_PRICE = re.compile(r"^\$?\s*(\d[\d,]*(?:\.\d+)?)$")
_PRICE_RANGE = re.compile(r"^\$?\s*\d[\d,]*(?:\.\d+)?\s*-\s*\$?\s*\d[\d,]*(?:\.\d+)?$")


def find_files(path: Path, name: str) -> tuple[Path, Path]:
    """(reviews file, meta file) in a directory, or for a given reviews file."""
    if path.is_file():
        reviews = path
    elif path.is_dir():
        candidates = sorted(p for p in path.iterdir() if REVIEW_FILE.match(p.name) and not p.name.startswith("meta_"))
        reviews = _pick_category(candidates, name, path)
    else:
        raise DataError(f"{path}: no such file or directory")
    match = REVIEW_FILE.match(reviews.name)
    if match is None:
        raise DataError(f"{reviews}: not an Amazon 5-core review file name (reviews_<Category>_5.json.gz or "
                        "<Category>_5.json.gz)")
    category = match["category"]
    metas = [reviews.parent / f"meta_{category}.json{ext}" for ext in (".gz", "")]
    meta = next((m for m in metas if m.exists()), None)
    if meta is None:
        raise DataError(f"{reviews}: no item metadata next to it (expected {metas[0].name})")
    return reviews, meta


def _pick_category(candidates: list[Path], name: str, directory: Path) -> Path:
    if not candidates:
        raise DataError(
            f"{directory}: no Amazon review file here (reviews_<Category>_5.json.gz or <Category>_5.json.gz)"
        )
    if len(candidates) == 1:
        return candidates[0]
    categories = {p: REVIEW_FILE.match(p.name)["category"].lower() for p in candidates}
    wanted = name.lower()
    for matches in (
        [p for p, c in categories.items() if c == wanted],
        [p for p, c in categories.items() if c.startswith(wanted)],  # sports -> Sports_and_Outdoors
    ):
        if len(matches) == 1:
            return matches[0]
    listing = ", ".join(p.name for p in candidates)
    raise DataError(f"{directory}: several review files ({listing}) and data.name={name!r} picks not exactly one; "
                    "set data.name to the category or data.path to the file")


def read_reviews(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """(reviewer ids, asins, unix times) in file order."""
    users, items, times = [], [], []
    for lineno, review in iter_json_lines(path):
        for field in REVIEW_FIELDS:
            if review.get(field) in (None, ""):
                raise DataError(f"{path}:{lineno}: missing field {field!r}")
        time = review["unixReviewTime"]
        if isinstance(time, bool) or not isinstance(time, (int, str)) or not str(time).strip().isdigit():
            raise DataError(f"{path}:{lineno}: unixReviewTime {time!r} is not an integer")
        users.append(str(review["reviewerID"]))
        items.append(str(review["asin"]))
        times.append(int(time))
    if not users:
        raise DataError(f"{path}: empty review file")
    return users, items, np.asarray(times, dtype=np.int64)


def k_core(user_codes: np.ndarray, item_codes: np.ndarray, k: int) -> np.ndarray:
    """Mask of the interactions kept by iterative k-core filtering: dropping a sparse user can make
    an item sparse and vice versa, so repeat until every user and item has >= k interactions."""
    keep = np.ones(len(user_codes), dtype=bool)
    while True:
        user_counts = np.bincount(user_codes[keep], minlength=user_codes.max() + 1)
        item_counts = np.bincount(item_codes[keep], minlength=item_codes.max() + 1)
        still = keep & (user_counts[user_codes] >= k) & (item_counts[item_codes] >= k)
        if still.sum() == keep.sum():
            return keep
        keep = still


def parse_meta_line(line: str, where: str) -> dict:
    """A 2018 JSON line or a 2014 Python dict literal."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        try:
            record = ast.literal_eval(line.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise DataError(f"{where}: neither JSON nor a Python dict literal") from None
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a dict, got {type(record).__name__}")
    if record.get("asin") in (None, ""):
        raise DataError(f"{where}: missing field 'asin'")
    return record


def _price(value):
    """2014 prices are floats; 2018 ones strings like "$12.99", "$5.99 - $9.99" or page junk (dropped)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    single = _PRICE.match(text)
    if single:
        return float(single[1].replace(",", ""))
    return text if _PRICE_RANGE.match(text) else None


def item_text_fields(record: dict) -> dict:
    """The item-table text fields from a 2014 or 2018 meta record; missing or empty ones left out."""
    fields = {}
    for key in ("title", "brand"):
        if isinstance(record.get(key), str) and record[key].strip():
            fields[key] = record[key].strip()
    categories = record.get("categories")  # 2014: list of category paths
    if categories is None and record.get("category"):  # 2018: one flat path
        categories = [record["category"]]
    if isinstance(categories, list):
        paths = [[str(c) for c in p] for p in categories if isinstance(p, list) and p]
        if paths:
            fields["categories"] = paths
    price = _price(record.get("price"))
    if price is not None:
        fields["price"] = price
    description = record.get("description")
    if isinstance(description, list):  # 2018: a list of paragraphs
        description = " ".join(str(d).strip() for d in description if str(d).strip())
    if isinstance(description, str) and description.strip():
        fields["description"] = description.strip()
    return fields


def read_meta(path: Path, wanted: set[str]) -> dict[str, dict]:
    """Text fields of the wanted asins; the first record of an asin wins (2018 files repeat some)."""
    meta: dict[str, dict] = {}
    for lineno, line in read_lines(path):
        if not line.strip():
            continue
        quick = _META_ASIN.search(line)
        if quick and quick[1] not in wanted:
            continue
        record = parse_meta_line(line, f"{path}:{lineno}")
        asin = str(record["asin"])
        if asin in wanted and asin not in meta:
            meta[asin] = item_text_fields(record)
    return meta


def load_amazon_raw(path: str | Path, name: str, min_interactions: int = 5) -> Dataset:
    reviews_path, meta_path = find_files(Path(path), name)
    users, items, times = read_reviews(reviews_path)

    user_codes, _ = pd.factorize(np.asarray(users, dtype=object))
    item_codes, _ = pd.factorize(np.asarray(items, dtype=object))
    keep = np.flatnonzero(k_core(user_codes, item_codes, min_interactions))
    if len(keep) == 0:
        raise DataError(f"{reviews_path}: nothing left after {min_interactions}-core filtering")
    user_ids, sequences = order_sequences([users[i] for i in keep], [items[i] for i in keep], times[keep])

    item_order = list(dict.fromkeys(asin for seq in sequences for asin in seq))
    meta = read_meta(meta_path, set(item_order))
    item_table = {asin: {"item_id": asin, "asin": asin, **meta.get(asin, {})} for asin in item_order}
    return build_dataset(name, user_ids, sequences, item_table, str(reviews_path))
