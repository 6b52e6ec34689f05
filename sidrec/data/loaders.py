"""Dataset loaders. ``load_dataset(cfg.data)`` picks one by ``data.format``:

- bundled:    Amazon Beauty shipped inside the package (P5 format, gzip)
- p5:         ``user item item ...`` per line (P5 / S3Rec dumps) + optional items.jsonl
- amazon_raw: the public Amazon review files (2014 reviews_X_5.json.gz + meta_X.json.gz, or 2018 JSON lines)
- recbole:    RecBole atomic files (.inter, optional .item)
- table:      a CSV/Parquet interactions table (+ optional item table)
"""

from __future__ import annotations

import codecs
import gzip
import json
from importlib import resources
from pathlib import Path
from typing import Iterator

import numpy as np

from sidrec.config import DataConfig
from sidrec.data.dataset import ITEM_TEXT_FIELDS, Dataset, from_sequences
from sidrec.errors import ConfigError, DataError

BUNDLED = ("beauty",)


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


def read_items_jsonl(path: Path) -> dict[str, dict]:
    """items.jsonl: one object per item with ``item_id`` and optional text fields / ``asin``."""
    items: dict[str, dict] = {}
    for lineno, obj in iter_json_lines(path):
        if "item_id" not in obj:
            raise DataError(f"{path}:{lineno}: missing field 'item_id'")
        item_id = str(obj["item_id"])
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


def read_p5_sequences(path: Path) -> tuple[list[str], list[list[str]]]:
    """``user item item ...`` per line, items in chronological order; ids must be integers."""
    users, sequences = [], []
    first_line: dict[str, int] = {}
    for lineno, line in read_lines(path):
        tokens = line.split()
        if not tokens:
            continue
        for tok in tokens:
            if not tok.isdigit():
                raise DataError(f"{path}:{lineno}: id {tok!r} is not a non-negative integer")
        if len(tokens) < 2:
            raise DataError(f"{path}:{lineno}: user {tokens[0]!r} has no items")
        if tokens[0] in first_line:
            raise DataError(f"{path}:{lineno}: user {tokens[0]!r} already appeared on line {first_line[tokens[0]]}")
        first_line[tokens[0]] = lineno
        users.append(tokens[0])
        sequences.append(tokens[1:])
    if not users:
        raise DataError(f"{path}: empty sequence file")
    return users, sequences


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


def load_p5(path: str | Path, name: str) -> Dataset:
    """A directory with sequences.txt (or sequential_data.txt) and optional items.jsonl, or the file itself."""
    path = Path(path)
    if path.is_dir():
        candidates = [path / f for f in ("sequences.txt", "sequences.txt.gz", "sequential_data.txt")]
        seq_path = next((c for c in candidates if c.exists()), None)
        if seq_path is None:
            raise DataError(f"{path}: no sequences.txt or sequential_data.txt in this directory")
        item_path = next((c for c in (path / "items.jsonl", path / "items.jsonl.gz") if c.exists()), None)
    elif path.exists():
        seq_path, item_path = path, None
    else:
        raise DataError(f"{path}: no such file or directory")
    users, sequences = read_p5_sequences(seq_path)
    items = read_items_jsonl(item_path) if item_path else None
    return build_dataset(name, users, sequences, items, str(seq_path))


def load_bundled(name: str) -> Dataset:
    if name not in BUNDLED:
        raise ConfigError(f"data.name={name!r} is not bundled (bundled: {', '.join(BUNDLED)}); "
                          "give data.format=p5|amazon_raw|recbole|table and data.path=...")
    root = resources.files("sidrec") / "data" / "bundled" / name
    with resources.as_file(root) as directory:
        return load_p5(directory, name)


def load_dataset(cfg: DataConfig) -> Dataset:
    fmt = cfg.format
    if fmt == "bundled":
        return load_bundled(cfg.name)
    if not cfg.path:
        raise ConfigError(f"data.format={fmt} needs data.path=<file or directory>")
    if fmt == "p5":
        return load_p5(cfg.path, cfg.name)
    if fmt == "amazon_raw":
        from sidrec.data.amazon_raw import load_amazon_raw

        return load_amazon_raw(cfg.path, cfg.name, min_interactions=cfg.min_interactions)
    if fmt == "recbole":
        from sidrec.data.tables import load_recbole

        return load_recbole(cfg.path, cfg.name)
    if fmt == "table":
        from sidrec.data.tables import load_table

        return load_table(cfg.path, cfg.name)
    raise ConfigError(f"unknown data.format={fmt!r} (have: bundled, p5, amazon_raw, recbole, table)")
