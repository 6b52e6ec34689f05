"""Tabular interaction files -> Dataset: RecBole atomic files and CSV/Parquet tables.

Both end the same way: interactions (user, item, optional timestamp) become one chronological
sequence per user (ties and missing timestamps keep file order), users in order of first
appearance; with an item table, items keep its order and every interaction must name one of them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sidrec.data.dataset import ITEM_TEXT_FIELDS, Dataset
from sidrec.data.readers import build_dataset, order_sequences, read_items_jsonl, read_lines
from sidrec.errors import DataError

ITEM_FIELDS = ("asin", *ITEM_TEXT_FIELDS)  # item-table columns kept (besides item_id)
RECBOLE_TYPES = ("token", "token_seq", "float", "float_seq")


def check_known_items(items: list[str], known: dict[str, dict], row_label, table: Path) -> None:
    for row, item in enumerate(items):
        if item not in known:
            raise DataError(f"{row_label(row)}: item_id {item!r} is not in the item table {table}")


# --- RecBole atomic files --------------------------------------------------------------------------
def read_atomic(path: Path) -> tuple[list[str], list[str], list[tuple[int, list[str]]]]:
    """A RecBole atomic file: tab-separated, first line ``name:type`` per column.
    Returns (column names, column types, [(line number, fields)])."""
    lines = read_lines(path)
    header = next(lines, None)
    if header is None or not header[1].strip():
        raise DataError(f"{path}: empty file (expected a header like user_id:token<TAB>item_id:token)")
    names, types = [], []
    for column in header[1].rstrip("\r\n").split("\t"):
        name, _, typ = column.partition(":")
        if typ not in RECBOLE_TYPES:
            raise DataError(f"{path}:1: header column {column!r} is not name:type with type in {RECBOLE_TYPES}")
        names.append(name)
        types.append(typ)
    rows = []
    for lineno, line in lines:
        if not line.strip():
            continue
        fields = line.rstrip("\r\n").split("\t")
        if len(fields) != len(names):
            raise DataError(f"{path}:{lineno}: {len(fields)} tab-separated fields, the header has {len(names)}")
        rows.append((lineno, fields))
    return names, types, rows


def _column(names: list[str], name: str, path: Path) -> int:
    if name not in names:
        raise DataError(f"{path}: missing column {name!r} (columns: {', '.join(names)})")
    return names.index(name)


def _float(value: str, where: str, field: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise DataError(f"{where}: {field} {value!r} is not a number") from None


def read_recbole_items(path: Path) -> dict[str, dict]:
    names, types, rows = read_atomic(path)
    id_col = _column(names, "item_id", path)
    kept = [(col, name, typ) for col, (name, typ) in enumerate(zip(names, types)) if name in ITEM_FIELDS]
    items: dict[str, dict] = {}
    for lineno, fields in rows:
        item_id = fields[id_col].strip()
        if not item_id:
            raise DataError(f"{path}:{lineno}: empty item_id")
        if item_id in items:
            raise DataError(f"{path}:{lineno}: duplicate item_id {item_id!r}")
        item = {"item_id": item_id}
        for col, name, typ in kept:
            value = fields[col].strip()
            if value:
                item[name] = _float(value, f"{path}:{lineno}", name) if typ == "float" else value
        items[item_id] = item
    if not items:
        raise DataError(f"{path}: no items")
    return items


def load_recbole(path: str | Path, name: str) -> Dataset:
    """A directory with ``<name>.inter`` (or a single .inter) and optional ``<name>.item``, or the .inter file."""
    path = Path(path)
    if path.is_dir():
        inter_path = path / f"{name}.inter"
        if not inter_path.exists():
            found = sorted(path.glob("*.inter"))
            if len(found) != 1:
                listing = ", ".join(p.name for p in found) or "none"
                raise DataError(f"{path}: no {name}.inter here (.inter files: {listing}); set data.name or data.path")
            inter_path = found[0]
    elif path.exists():
        inter_path = path
    else:
        raise DataError(f"{path}: no such file or directory")
    item_path = inter_path.with_suffix(".item")

    names, _, rows = read_atomic(inter_path)
    user_col, item_col = _column(names, "user_id", inter_path), _column(names, "item_id", inter_path)
    time_col = names.index("timestamp") if "timestamp" in names else None
    users, items, times = [], [], []
    for lineno, fields in rows:
        user, item = fields[user_col].strip(), fields[item_col].strip()
        if not user or not item:
            raise DataError(f"{inter_path}:{lineno}: empty {'user_id' if not user else 'item_id'}")
        users.append(user)
        items.append(item)
        if time_col is not None:
            times.append(_float(fields[time_col].strip(), f"{inter_path}:{lineno}", "timestamp"))
    if not users:
        raise DataError(f"{inter_path}: no interactions")

    item_table = read_recbole_items(item_path) if item_path.exists() else None
    if item_table is not None:
        check_known_items(items, item_table, lambda row: f"{inter_path}:{rows[row][0]}", item_path)
    user_ids, sequences = order_sequences(users, items, np.asarray(times) if time_col is not None else None)
    return build_dataset(name, user_ids, sequences, item_table, str(inter_path))


# --- CSV / Parquet tables --------------------------------------------------------------------------
INTERACTION_FILES = ("interactions.csv", "interactions.csv.gz", "interactions.tsv", "interactions.parquet")
ITEM_FILES = ("items.csv", "items.csv.gz", "items.tsv", "items.parquet", "items.jsonl", "items.jsonl.gz")


def read_frame(path: Path) -> pd.DataFrame:
    """CSV/TSV (all columns read as strings, so ids like 007 survive) or Parquet."""
    suffixes = "".join(path.suffixes[-2:]).lower()
    try:
        if suffixes.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz")):
            sep = "\t" if ".tsv" in suffixes else ","
            return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        if suffixes.endswith(".parquet"):
            return pd.read_parquet(path)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file") from None
    except Exception as exc:  # pandas/pyarrow parse errors of many types
        raise DataError(f"{path}: cannot parse ({' '.join(str(exc).split())})") from None
    raise DataError(f"{path}: unsupported table format (expected .csv, .tsv or .parquet)")


def _row_labeller(path: Path):
    """Names a data row as a user finds it: CSV line numbers count the header; Parquet rows from 1."""
    if path.suffix.lower() == ".parquet":
        return lambda row: f"{path}: row {row + 1}"
    return lambda row: f"{path}:{row + 2}"


def _require(frame: pd.DataFrame, column: str, path: Path) -> pd.Series:
    if column not in frame.columns:
        raise DataError(f"{path}: missing column {column!r} (columns: {', '.join(map(str, frame.columns))})")
    return frame[column]


def _ids(column: pd.Series, name: str, row_label) -> list[str]:
    if pd.api.types.is_float_dtype(column) and column.notna().all() and (column % 1 == 0).all():
        column = column.astype("int64")  # Parquet writers turn integer ids into floats at times
    text = column.astype(str).str.strip()
    missing = column.isna().to_numpy() | (text == "").to_numpy()
    if missing.any():
        raise DataError(f"{row_label(int(np.argmax(missing)))}: empty {name}")
    return text.tolist()


def _epoch_seconds(dates: pd.Series) -> np.ndarray:
    # Via a Timedelta, not astype(int64): pandas keeps s/ms/us/ns resolutions, so raw ints differ in unit.
    if dates.dt.tz is None:
        dates = dates.dt.tz_localize("UTC")
    return ((dates - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(dtype=float)


def _timestamps(column: pd.Series, row_label) -> np.ndarray:
    """Seconds as float: numbers as they are, datetimes and ISO date strings converted."""
    if pd.api.types.is_datetime64_any_dtype(column):
        seconds = _epoch_seconds(column)
        bad = np.isnan(seconds)
    elif pd.api.types.is_numeric_dtype(column):
        seconds = column.astype(float).to_numpy()
        bad = np.isnan(seconds)
    else:
        numbers = pd.to_numeric(column, errors="coerce")
        if numbers.notna().any():
            seconds, bad = numbers.to_numpy(dtype=float), numbers.isna().to_numpy()
            if bad.any():
                row = int(np.argmax(bad))
                raise DataError(f"{row_label(row)}: timestamp {column.iloc[row]!r} is not a number")
            return seconds
        dates = pd.to_datetime(column, errors="coerce", utc=True, format="ISO8601")
        bad = dates.isna().to_numpy()
        if bad.any():
            row = int(np.argmax(bad))
            raise DataError(f"{row_label(row)}: timestamp {column.iloc[row]!r} is neither a number nor an ISO date")
        return _epoch_seconds(dates)
    if bad.any():
        raise DataError(f"{row_label(int(np.argmax(bad)))}: empty timestamp")
    return seconds


def _plain(value):
    """Python value for the item table (JSON-serialisable); None for missing."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (list, tuple)):
        value = [_plain(v) for v in value]
        return [v for v in value if v not in (None, "", [])] or None
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, str):
        return value.strip() or None
    return value


def read_item_frame(path: Path) -> dict[str, dict]:
    frame = read_frame(path)
    row_label = _row_labeller(path)
    ids = _ids(_require(frame, "item_id", path), "item_id", row_label)
    columns = [c for c in ITEM_FIELDS if c in frame.columns]
    items: dict[str, dict] = {}
    for row, (item_id, values) in enumerate(zip(ids, frame[columns].itertuples(index=False, name=None))):
        if item_id in items:
            raise DataError(f"{row_label(row)}: duplicate item_id {item_id!r}")
        item = {"item_id": item_id}
        for field, value in zip(columns, values):
            value = _plain(value)
            if value is None:
                continue
            if field == "price" and isinstance(value, str):
                try:
                    value = float(value.lstrip("$").replace(",", ""))
                except ValueError:
                    pass  # a range or a note ("$5 - $9"): kept as text
            item[field] = value
        items[item_id] = item
    if not items:
        raise DataError(f"{path}: no items")
    return items


def load_table(path: str | Path, name: str) -> Dataset:
    """A directory with interactions.{csv,tsv,parquet} and optional items.{csv,tsv,parquet,jsonl},
    or a single interactions file (then items are the ids it mentions)."""
    path = Path(path)
    if path.is_dir():
        inter_path = next((path / f for f in INTERACTION_FILES if (path / f).exists()), None)
        if inter_path is None:
            raise DataError(f"{path}: no interactions file here (expected one of {', '.join(INTERACTION_FILES)})")
        item_path = next((path / f for f in ITEM_FILES if (path / f).exists()), None)
    elif path.exists():
        inter_path, item_path = path, None
    else:
        raise DataError(f"{path}: no such file or directory")

    frame = read_frame(inter_path)
    row_label = _row_labeller(inter_path)
    users = _ids(_require(frame, "user_id", inter_path), "user_id", row_label)
    items = _ids(_require(frame, "item_id", inter_path), "item_id", row_label)
    if not users:
        raise DataError(f"{inter_path}: no interactions")
    times = _timestamps(frame["timestamp"], row_label) if "timestamp" in frame.columns else None

    item_table = None
    if item_path is not None:
        is_jsonl = item_path.name.endswith((".jsonl", ".jsonl.gz"))
        item_table = read_items_jsonl(item_path) if is_jsonl else read_item_frame(item_path)
        check_known_items(items, item_table, row_label, item_path)
    user_ids, sequences = order_sequences(users, items, times)
    return build_dataset(name, user_ids, sequences, item_table, str(inter_path))
