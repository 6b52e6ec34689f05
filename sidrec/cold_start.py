"""Cold start: add items to a finished run without retraining.

``sidrec add-items run_dir=... items=new_items.jsonl`` (and ``POST /items`` of the HTTP service):

1. the new items are embedded with the run's encoder settings (config.json's ``encoder`` section and
   ``data.text_template``),
2. the frozen tokenizer (``tokenizer.pt``) assigns their codes,
3. the SID table is extended (``SIDTable.add_items``): existing items keep their SIDs, since the
   de-dup digit numbers a collision group in item order and new items come last,
4. ``items.jsonl``, ``embeddings.npy`` and ``sid_table.npz`` are replaced as one unit.

The model's vocabulary is fixed when it is trained: the de-dup digit has ``level_sizes[-1]``
values (the largest collision group of the training catalog plus ``tokenizer.dedup_reserve``). A
new item whose code is already shared by that many items cannot get a SID the model can generate;
such items are refused with an error naming them (nothing is written). Train with a reserve when
items will be added later.

Atomicity. The three catalog files live in a generation directory ``catalog.gen-<n>/`` and the run
directory's ``items.jsonl``, ``embeddings.npy`` and ``sid_table.npz`` are relative symlinks through
one pointer, ``catalog -> catalog.gen-<n>``. Adding items writes a complete new generation
directory, then replaces the pointer with one ``rename`` (the commit point). A crash at any earlier
moment leaves the pointer, hence every file, at the old generation; leftovers of a failed attempt
are removed by the next one. Every reader of the run directory (``Dataset.load``, ``SIDTable.load``,
``sidrec evaluate``) keeps working unchanged through the symlinks. The first add-items on a run
converts its plain files into this layout (generation 0, hard links to the same content), one
atomic rename per file, so every intermediate state holds the original content.

Imports no training code.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sidrec.config import RunConfig
from sidrec.data.dataset import MAX_ID_CHARS, MAX_ID_INT, Dataset
from sidrec.data.readers import iter_json_lines
from sidrec.errors import ArtifactError, DataError, brief
from sidrec.io import fsync_path, make_temp_dir
from sidrec.layout import (CATALOG_FILES, CATALOG_GENERATION, CATALOG_LOCK, CATALOG_TEMP, CATALOG_MANIFEST as MANIFEST,
                           CATALOG_POINTER as POINTER, EMBEDDINGS, ITEMS, SID_TABLE, TOKENIZER)
from sidrec.run import RunDir, load_catalog
from sidrec.tokenize.sid_table import SIDTable

GENERATION = re.compile("^" + re.escape(CATALOG_GENERATION).replace(r"\{\}", r"(\d+)") + "$")


@dataclass
class AddResult:
    dataset: Dataset
    sid_table: SIDTable
    embeddings: np.ndarray
    added: list[int]  # internal indices of the new items
    generation: int


# --- reading the new items ----------------------------------------------------------------------
def read_items_file(path: str | Path) -> list[dict]:
    """A JSON-lines file of new items: one object per line with ``item_id`` and text fields."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: new-items file not found")
    items = [item for _, item in iter_json_lines(path)]
    if not items:
        raise DataError(f"{path}: no items")
    return items


def normalise_items(new_items: list[dict], dataset: Dataset) -> list[dict]:
    """Checks the items (check_new_item) and their ids (not in the catalog, not given twice) and
    returns them with string ids."""
    if not isinstance(new_items, list) or not new_items:
        raise DataError("no new items given")
    taken = dataset.item_index()
    taken.update({item["asin"]: i for i, item in enumerate(dataset.items) if item.get("asin")})
    seen: set[str] = set()
    out = []
    for n, item in enumerate(new_items):
        check_new_item(item, f"new item {n}")
        raw = whole_number(item["item_id"])
        ids = [str(raw)] + ([str(item["asin"])] if item.get("asin") else [])
        for ident in ids:
            if ident in taken:
                raise DataError(f"new item {n}: id {brief(ident)} is already in the catalog")
            if ident in seen:
                raise DataError(f"new item {n}: id {brief(ident)} is given twice")
            seen.add(ident)
        out.append({**item, "item_id": str(raw)})
    return out


# Python's whitespace (str.isspace) spelled out, so that the same pattern means the same in the
# service's OpenAPI document (JSON Schema regexes differ on what \s is).
NON_BLANK = "[^\t-\r\x1c- \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
_NON_BLANK = re.compile(NON_BLANK)
TEXT_FIELDS = ("title", "brand", "description")  # text or null


def whole_number(value):
    """JSON has one kind of number: 5.0 is the integer 5 (as JSON Schema's "integer" has it)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    for types, name in ((str, "a string"), (int, "an integer"), (float, "a number"), (list, "an array"),
                        (dict, "an object")):
        if isinstance(value, types):
            return name
    return f"a {type(value).__name__}"


def check_new_item(item, where: str, max_chars: int | None = None) -> None:
    """One new item, as the HTTP service's OpenAPI document describes it (DataError naming the
    field otherwise): an object whose values are writable JSON (check_item_value); ``item_id`` a
    non-blank string of at most MAX_ID_CHARS characters or a 64-bit integer, the ids /recommend
    accepts; ``asin`` such a string or null; title, brand and description text or null; price a
    number, text or null; categories a list of category paths (lists of names) or names, or null.
    Other fields are kept as given."""
    if not isinstance(item, dict):
        raise DataError(f"{where}: expected an object, got {_json_type(item)}")
    check_item_value(item, where, max_chars)
    raw = whole_number(item.get("item_id"))
    if raw is None or isinstance(raw, bool) or not isinstance(raw, (str, int)) or not _NON_BLANK.search(str(raw)):
        raise DataError(f"{where}: needs an item_id (a non-empty string or integer)")
    if isinstance(raw, str) and len(raw) > MAX_ID_CHARS:
        raise DataError(f"{where}.item_id: {len(raw)} characters; ids have at most {MAX_ID_CHARS} "
                        "(the longest /recommend accepts)")
    if isinstance(raw, int) and not -MAX_ID_INT <= raw < MAX_ID_INT:
        raise DataError(f"{where}.item_id: integer ids must fit in 64 bits (give a longer id as a string)")
    asin = item.get("asin")
    if asin is not None and not isinstance(asin, str):
        raise DataError(f"{where}.asin: expected a string or null, got {_json_type(asin)}")
    if asin is not None and len(asin) > MAX_ID_CHARS:
        raise DataError(f"{where}.asin: {len(asin)} characters; ids have at most {MAX_ID_CHARS}")
    for name in TEXT_FIELDS:
        value = item.get(name)
        if value is not None and not isinstance(value, str):
            raise DataError(f"{where}.{name}: expected a string or null, got {_json_type(value)}")
    price = item.get("price")
    if price is not None and (isinstance(price, bool) or not isinstance(price, (str, int, float))):
        raise DataError(f"{where}.price: expected a number, a string or null, got {_json_type(price)}")
    categories = item.get("categories")
    if categories is not None:
        if not isinstance(categories, list):
            raise DataError(f"{where}.categories: expected a list of category paths (lists of names) or null, "
                            f"got {_json_type(categories)}")
        for i, path in enumerate(categories):
            names = path if isinstance(path, list) else [path]
            for j, name in enumerate(names):
                if not isinstance(name, str):
                    at = f"{where}.categories[{i}]" + (f"[{j}]" if isinstance(path, list) else "")
                    raise DataError(f"{at}: expected a string (a category name), got {_json_type(name)}")


MAX_DEPTH = 8  # nesting of lists/objects in an item field (categories are lists of lists)


def check_item_value(value, where: str, max_chars: int | None = None, depth: int = 0) -> None:
    """Item fields hold JSON text, finite numbers, booleans, null, and lists/objects of those: a
    lone surrogate cannot be written as UTF-8 and NaN is not JSON, so both would fail mid-write.
    ``max_chars`` bounds every text (the HTTP service's max_field_chars)."""
    if depth > MAX_DEPTH:
        raise DataError(f"{where}: nested more than {MAX_DEPTH} levels deep")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise DataError(f"{where}: text with an unpaired surrogate {value[exc.start]!r} "
                            f"at position {exc.start}") from None
        if max_chars is not None and len(value) > max_chars:
            raise DataError(f"{where}: {len(value)} characters; at most {max_chars}")
    elif isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise DataError(f"{where}: {value} is not a finite number")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            check_item_value(v, f"{where}[{i}]", max_chars, depth + 1)
    elif isinstance(value, dict):
        for key, v in value.items():
            check_item_value(key, f"{where} (a field name)", max_chars, depth + 1)
            check_item_value(v, _field_path(where, key), max_chars, depth + 1)
    else:
        raise DataError(f"{where}: unsupported value of type {type(value).__name__}")


def _field_path(where: str, key) -> str:
    """Where a field's value is, for an error message: ``where.key``, or ``where['long key'...]``."""
    if isinstance(key, str) and key.isprintable() and len(key) <= 40:
        return f"{where}.{key}"
    return f"{where}[{brief(key, 40)}]"


# --- embedding and codes ------------------------------------------------------------------------
def embed_items(texts: list[str], cfg: RunConfig) -> np.ndarray:
    """Indirection over sidrec.encode.embed_items (tests replace it with a fake encoder)."""
    from sidrec.encode import embed_items as embed

    return embed(texts, cfg.encoder, progress=False)


def assign_codes(run_dir: Path, cfg: RunConfig, embeddings: np.ndarray) -> np.ndarray:
    from sidrec.tokenize import load_tokenizer

    t = cfg.tokenizer
    tokenizer = load_tokenizer(run_dir / TOKENIZER, expected_levels=t.num_levels,
                               expected_codes=t.num_codes_per_level, expected_dim=embeddings.shape[1])
    return tokenizer.encode(embeddings)


def extend_table(sid_table: SIDTable, codes: np.ndarray, new_items: list[dict]) -> SIDTable:
    """The table with the new items appended; refuses items the model's vocabulary cannot express."""
    table = sid_table.add_items(codes)
    n = sid_table.num_items
    if not np.array_equal(table.sids[:n], sid_table.sids):  # SIDTable.add_items promises this
        raise ArtifactError("extending the SID table changed existing items' SIDs (bug)")
    if table.level_sizes != sid_table.level_sizes:
        limit = sid_table.level_sizes[-1]
        full = [new_items[i]["item_id"] for i in np.flatnonzero(table.sids[n:, -1] >= limit)]
        raise DataError(
            f"{len(full)} new item(s) get a code already shared by {limit} items, the most the model's "
            f"de-dup digit can number (its vocabulary has {limit} values at that level); they cannot be "
            "recommended without retraining: drop them, or re-train with spare values "
            f"(tokenizer.dedup_reserve=8); all {len(full)}: {', '.join(brief(x, 40) for x in full)}"
        )
    return table


# --- the generation layout ----------------------------------------------------------------------
def _rename(src: Path, dst: Path) -> None:
    """os.replace, as a module function so tests can simulate a crash at any rename."""
    os.replace(src, dst)


def _symlink_atomically(target: str, path: Path) -> None:
    tmp = path.parent / f".{path.name}.{os.getpid()}.lnk"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(target, tmp)
    try:
        _rename(tmp, path)
    finally:
        if tmp.is_symlink():
            tmp.unlink()


def current_generation(run_dir: str | Path) -> int:
    """The catalog generation in use: 0 for a run never extended (plain files)."""
    pointer = Path(run_dir) / POINTER
    if not pointer.is_symlink():
        return 0
    match = GENERATION.match(os.readlink(pointer))
    if not match:
        raise ArtifactError(f"{pointer}: points to {os.readlink(pointer)!r}, not a catalog generation")
    return int(match.group(1))


def _convert_layout(run_dir: Path) -> None:
    """Plain catalog files -> generation 0 + symlinks, each step leaving the same content visible."""
    pointer = run_dir / POINTER
    if not pointer.is_symlink():
        # No pointer yet, so every catalog file is still a plain file: snapshot them afresh.
        gen0 = run_dir / CATALOG_GENERATION.format(0)
        shutil.rmtree(gen0, ignore_errors=True)
        tmp = make_temp_dir(run_dir, CATALOG_TEMP)
        for name in CATALOG_FILES:
            try:
                os.link(run_dir / name, tmp / name)
            except OSError:  # no hard links on this file system
                shutil.copy2(run_dir / name, tmp / name)
        _rename(tmp, gen0)
        _symlink_atomically(gen0.name, pointer)
    for name in CATALOG_FILES:
        path = run_dir / name
        if not path.is_symlink():
            _symlink_atomically(f"{POINTER}/{name}", path)
    fsync_path(run_dir)


def _clean_leftovers(run_dir: Path, keep: set[str]) -> None:
    """Removes temp directories of failed attempts and generations other than ``keep``."""
    for path in run_dir.iterdir():
        if path.name.startswith(CATALOG_TEMP) or (GENERATION.match(path.name) and path.name not in keep):
            shutil.rmtree(path, ignore_errors=True)
        elif path.name.startswith(".") and path.name.endswith(".lnk") and path.is_symlink():
            path.unlink()


@contextlib.contextmanager
def _locked(run_dir: Path):
    """One add-items at a time per run directory (across processes)."""
    import fcntl

    with open(run_dir / CATALOG_LOCK, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _write_generation(run_dir: Path, generation: int, dataset: Dataset, embeddings: np.ndarray,
                      table: SIDTable, added: list[str]) -> Path:
    tmp = make_temp_dir(run_dir, CATALOG_TEMP)
    dataset.write_items(tmp / ITEMS)
    with open(tmp / EMBEDDINGS, "wb") as fh:
        np.save(fh, embeddings)
    table.save(tmp / SID_TABLE)
    manifest = {"generation": generation, "num_items": dataset.num_items, "added_item_ids": added}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    for name in (*CATALOG_FILES, MANIFEST):
        fsync_path(tmp / name)
    fsync_path(tmp)
    final = run_dir / CATALOG_GENERATION.format(generation)
    if final.exists():
        shutil.rmtree(final)
    _rename(tmp, final)
    return final


def add_items(run_dir: str | Path, new_items: list[dict], cfg: RunConfig | None = None) -> AddResult:
    """Embeds, codes and appends ``new_items`` to the run's catalog; see the module docstring."""
    run_dir = Path(run_dir)
    cfg = cfg or RunDir(run_dir).config
    with _locked(run_dir):
        dataset, sid_table, old_embeddings = load_catalog(run_dir)
        items = normalise_items(new_items, dataset)
        from sidrec.data.text import item_texts

        texts = item_texts(items, cfg.data.text_template, cfg.data.missing_text, cfg.data.max_text_chars,
                           source="new items")
        vectors = np.asarray(embed_items(texts, cfg), dtype=np.float32)
        if vectors.shape != (len(items), old_embeddings.shape[1]):
            raise ArtifactError(f"new item embeddings have shape {vectors.shape}, the run's are "
                                f"{old_embeddings.shape[1]}-dim: is config.json's encoder the one the run used?")
        codes = assign_codes(run_dir, cfg, vectors)
        table = extend_table(sid_table, codes, items)

        generation = current_generation(run_dir)
        _clean_leftovers(run_dir, keep={CATALOG_GENERATION.format(g) for g in (0, generation)})
        _convert_layout(run_dir)
        dataset = Dataset(dataset.name, dataset.items + items, dataset.user_ids, dataset.seq_offsets,
                          dataset.seq_items)
        embeddings = np.concatenate([np.asarray(old_embeddings, dtype=np.float32), vectors])
        added = list(range(sid_table.num_items, table.num_items))
        new_gen = _write_generation(run_dir, generation + 1, dataset, embeddings, table,
                                    [item["item_id"] for item in items])
        _symlink_atomically(new_gen.name, run_dir / POINTER)  # the commit point
        fsync_path(run_dir)
        # Keep the previous generation (a reader may still be opening it) and generation 0.
        _clean_leftovers(run_dir, keep={CATALOG_GENERATION.format(g) for g in (0, generation, generation + 1)})
    return AddResult(dataset, table, embeddings, added, generation + 1)
