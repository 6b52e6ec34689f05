"""The dataset artifact: each user's chronological item sequence plus the item table.

Items are addressed internally by a dense index 0..N-1 (the row of the embedding matrix and the
SID table); the original id from the source file is kept as ``item_id`` in the item table.
Sequences are stored flat (CSR): ``seq_items[seq_offsets[u]:seq_offsets[u + 1]]`` is user u's.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sidrec.errors import ArtifactError, DataError
from sidrec.io import atomic_path, write_npz

ITEM_TEXT_FIELDS = ("title", "brand", "categories", "price", "description")
# Ids that a request may carry (history items, users) and that added items may have: strings of at
# most this many characters or 64-bit integers. One limit, so no added item is unreachable.
MAX_ID_CHARS = 256
MAX_ID_INT = 2**63
MIN_SEQUENCE_LENGTH = 3  # leave-last-out needs >= 1 training item + validation + test


@dataclass
class Dataset:
    name: str
    items: list[dict]  # row = internal item index; "item_id" (str) + optional text fields, "asin"
    user_ids: list[str]
    seq_offsets: np.ndarray  # (U + 1,) int64
    seq_items: np.ndarray  # (num_interactions,) int64 internal item indices

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_items(self) -> int:
        return len(self.items)

    @property
    def num_interactions(self) -> int:
        return int(self.seq_items.shape[0])

    def sequence(self, user: int) -> np.ndarray:
        return self.seq_items[self.seq_offsets[user] : self.seq_offsets[user + 1]]

    def sequence_lengths(self) -> np.ndarray:
        return np.diff(self.seq_offsets)

    def item_index(self) -> dict[str, int]:
        """External item id -> internal index."""
        return {item["item_id"]: i for i, item in enumerate(self.items)}

    def stats(self) -> dict:
        lengths = self.sequence_lengths()
        return {
            "name": self.name,
            "users": self.num_users,
            "items": self.num_items,
            "interactions": self.num_interactions,
            "mean_sequence_length": round(float(lengths.mean()), 2) if len(lengths) else 0.0,
            "items_with_text": sum(any(item.get(f) for f in ITEM_TEXT_FIELDS) for item in self.items),
        }

    def content_hash(self) -> str:
        """Hash of everything that defines the dataset (used to key the embedding cache)."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.seq_offsets, dtype=np.int64).tobytes())
        h.update(np.ascontiguousarray(self.seq_items, dtype=np.int64).tobytes())
        h.update(json.dumps(self.items, sort_keys=True).encode())
        return h.hexdigest()[:16]

    def validate(self, source: str) -> None:
        """Checks that every later stage relies on; raises DataError naming the source."""
        if self.num_users == 0:
            raise DataError(f"{source}: no users (empty file?)")
        if self.num_items == 0:
            raise DataError(f"{source}: no items")
        if len(self.seq_offsets) != self.num_users + 1 or self.seq_offsets[-1] != self.num_interactions:
            raise DataError(f"{source}: sequence offsets are inconsistent")
        if self.num_interactions and (self.seq_items.min() < 0 or self.seq_items.max() >= self.num_items):
            raise DataError(f"{source}: a sequence references an item outside the item table")
        lengths = self.sequence_lengths()
        short = np.flatnonzero(lengths < MIN_SEQUENCE_LENGTH)
        if len(short):
            u = int(short[0])
            raise DataError(
                f"{source}: user {self.user_ids[u]!r} has {int(lengths[u])} interactions; leave-last-out "
                f"needs at least {MIN_SEQUENCE_LENGTH} ({len(short)} such users; filter them or use a k-core)"
            )
        seen: set[str] = set()
        for item in self.items:
            if item["item_id"] in seen:
                raise DataError(f"{source}: duplicate item id {item['item_id']!r} in the item table")
            seen.add(item["item_id"])

    # --- artifact I/O: the item table (JSON lines) and the sequences (npz); sidrec.run names the files
    def write_items(self, path: str | Path) -> None:
        with atomic_path(Path(path)) as tmp:
            with open(tmp, "w", encoding="utf-8") as fh:
                for item in self.items:
                    fh.write(json.dumps(item, ensure_ascii=False) + "\n")

    def save(self, items_path: str | Path, sequences_path: str | Path) -> None:
        self.write_items(items_path)
        write_npz(
            Path(sequences_path),
            seq_offsets=self.seq_offsets,
            seq_items=self.seq_items,
            user_ids=np.asarray(self.user_ids, dtype=str),
            name=np.asarray(self.name),
        )

    @classmethod
    def load(cls, items_path: str | Path, sequences_path: str | Path) -> "Dataset":
        items_path, seq_path = Path(items_path), Path(sequences_path)
        for p in (items_path, seq_path):
            if not p.exists():
                raise ArtifactError(f"{p}: missing dataset artifact (run `sidrec prepare` first)")
        try:
            with np.load(seq_path) as z:
                offsets, seq_items = z["seq_offsets"], z["seq_items"]
                user_ids, name = [str(u) for u in z["user_ids"]], str(z["name"])
        except Exception as exc:  # zip/pickle/key errors all mean the same thing to the user
            raise ArtifactError(f"{seq_path}: unreadable dataset artifact ({exc})") from None
        items = []
        with open(items_path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                try:
                    items.append(json.loads(line))
                except json.JSONDecodeError:
                    raise ArtifactError(f"{items_path}:{lineno}: not valid JSON") from None
        ds = cls(name, items, user_ids, offsets.astype(np.int64), seq_items.astype(np.int64))
        ds.validate(str(seq_path.parent))
        return ds


def from_sequences(name: str, items: list[dict], user_ids: list[str], sequences: list[np.ndarray]) -> Dataset:
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    offsets = np.zeros(len(sequences) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.concatenate(sequences).astype(np.int64) if sequences else np.zeros(0, dtype=np.int64)
    return Dataset(name, items, user_ids, offsets, flat)
