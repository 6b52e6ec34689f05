"""Dataset loaders. ``load_dataset(cfg.data)`` picks one by ``data.format``:

- bundled:    Amazon Beauty shipped inside the package (P5 format, gzip)
- p5:         ``user item item ...`` per line (P5 / S3Rec dumps) + optional items.jsonl
- amazon_raw: the public Amazon review files (2014 reviews_X_5.json.gz + meta_X.json.gz, or 2018 JSON lines)
- recbole:    RecBole atomic files (.inter, optional .item)
- table:      a CSV/Parquet interactions table (+ optional item table)

The P5 reader lives here (the bundled data is P5); the other formats have their own modules, and
all of them share readers.py.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from sidrec.config import DataConfig
from sidrec.data.amazon_raw import load_amazon_raw
from sidrec.data.dataset import Dataset
from sidrec.data.readers import build_dataset, read_items_jsonl, read_lines
from sidrec.data.tables import load_recbole, load_table
from sidrec.errors import ConfigError, DataError
from sidrec.io import write_text

BUNDLED = ("beauty",)
FORMATS = ("bundled", "p5", "amazon_raw", "recbole", "table")
P5_SEQUENCES = "sequences.txt"  # a P5 directory's files (read by load_p5, written by write_p5)
P5_ITEMS = "items.jsonl"


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


def load_p5(path: str | Path, name: str) -> Dataset:
    """A directory with sequences.txt (or sequential_data.txt) and optional items.jsonl, or the file itself."""
    path = Path(path)
    if path.is_dir():
        candidates = [path / f for f in (P5_SEQUENCES, f"{P5_SEQUENCES}.gz", "sequential_data.txt")]
        seq_path = next((c for c in candidates if c.exists()), None)
        if seq_path is None:
            raise DataError(f"{path}: no sequences.txt or sequential_data.txt in this directory")
        item_path = next((c for c in (path / P5_ITEMS, path / f"{P5_ITEMS}.gz") if c.exists()), None)
    elif path.exists():
        seq_path, item_path = path, None
    else:
        raise DataError(f"{path}: no such file or directory")
    users, sequences = read_p5_sequences(seq_path)
    items = read_items_jsonl(item_path, integer_ids=True) if item_path else None
    return build_dataset(name, users, sequences, items, str(seq_path))


def write_p5(directory: str | Path, user_ids: list[str], sequences: list[list[str]], items: list[dict]) -> None:
    """A P5 directory ``load_p5`` reads back: ``sequences.txt`` (``user item item ...`` per line, in
    order) and ``items.jsonl``. P5 ids are integers; another id is a DataError."""
    for user, sequence in zip(user_ids, sequences):
        bad = next((i for i in (user, *sequence) if not str(i).isdigit()), None)
        if bad is not None:
            raise DataError(f"id {bad!r} is not a non-negative integer: the P5 format holds integer ids only")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_text(directory / P5_SEQUENCES, "".join(" ".join([u, *s]) + "\n" for u, s in zip(user_ids, sequences)))
    write_text(directory / P5_ITEMS, "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items))


def check_bundled(name: str) -> None:
    if name not in BUNDLED:
        raise ConfigError(f"data.name={name!r} is not bundled (bundled: {', '.join(BUNDLED)}); "
                          "give data.format=p5|amazon_raw|recbole|table and data.path=...")


def load_bundled(name: str) -> Dataset:
    check_bundled(name)
    root = resources.files("sidrec") / "data" / "bundled" / name
    with resources.as_file(root) as directory:
        return load_p5(directory, name)


def check_data_config(cfg: DataConfig) -> None:
    """The format, and the name or path it needs (the files are read by ``load_dataset``)."""
    if cfg.format not in FORMATS:
        raise ConfigError(f"unknown data.format={cfg.format!r} (have: {', '.join(FORMATS)})")
    if cfg.format == "bundled":
        check_bundled(cfg.name)
    elif not cfg.path:
        raise ConfigError(f"data.format={cfg.format} needs data.path=<file or directory>")


def load_dataset(cfg: DataConfig) -> Dataset:
    check_data_config(cfg)
    fmt = cfg.format
    if fmt == "bundled":
        return load_bundled(cfg.name)
    if fmt == "p5":
        return load_p5(cfg.path, cfg.name)
    if fmt == "amazon_raw":
        return load_amazon_raw(cfg.path, cfg.name, min_interactions=cfg.min_interactions)
    if fmt == "recbole":
        return load_recbole(cfg.path, cfg.name)
    return load_table(cfg.path, cfg.name)
