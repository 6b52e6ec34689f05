"""The SID <-> item table.

Raw tokenizer codes can collide (several items, one code). Two ways out:
  extra_digit (TIGER): append a digit numbering the items that share a code, 0, 1, 2.. in item
      order, so every SID is unique; the digit's level size is the largest collision group.
  random: keep the raw codes; a generated SID shared by several items maps to one of them at random.

Lookups turn each SID into one int64 key (mixed radix over the level sizes) and binary-search the
sorted keys of the table, so M SIDs cost O(M log N) with no Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sidrec.errors import ArtifactError, ConfigError, DataError
from sidrec.io import write_npz

DEDUPS = ("extra_digit", "random")


def check_dedup(dedup: str) -> None:
    if dedup not in DEDUPS:
        raise ConfigError(f"unknown tokenizer.dedup {dedup!r} (have: {', '.join(DEDUPS)})")


def sid_keys(sids: np.ndarray, level_sizes: tuple[int, ...]) -> np.ndarray:
    """(M, L) digits -> (M,) int64 mixed-radix keys (digit l has weight prod(level_sizes[l+1:]))."""
    weights = np.cumprod((1,) + tuple(level_sizes[:0:-1]))[::-1].astype(np.int64)
    return sids @ weights


def _digit_size(dedup: str, level_sizes) -> int:
    """Values of the extra de-dup digit (the last level), 0 when there is none."""
    return int(level_sizes[-1]) if dedup == "extra_digit" else 0


@dataclass(eq=False)
class SIDTable:
    codes: np.ndarray  # (N, L) raw tokenizer codes
    sids: np.ndarray  # (N, L') final SIDs
    dedup: str
    level_sizes: tuple[int, ...]
    _sorted_keys: np.ndarray = field(init=False, repr=False)
    _sorted_items: np.ndarray = field(init=False, repr=False)  # item index of each sorted key

    def __post_init__(self):
        keys = sid_keys(self.sids, self.level_sizes)
        self._sorted_items = np.argsort(keys, kind="stable")  # stable: items sharing a SID stay in item order
        self._sorted_keys = keys[self._sorted_items]

    @classmethod
    def build(cls, codes: np.ndarray, num_codes_per_level: int, dedup: str, reserve: int = 0,
              digit_size: int = 0) -> "SIDTable":
        """``extra_digit``: the digit has (largest collision group + ``reserve``) values, at least
        ``digit_size``; the reserve leaves room for cold-start items added after training."""
        check_dedup(dedup)
        codes = np.asarray(codes)
        if codes.ndim != 2 or len(codes) == 0 or codes.shape[1] == 0 or not np.issubdtype(codes.dtype, np.integer):
            raise DataError(f"SID codes must be a non-empty (N, L) integer array, got {codes.dtype} {codes.shape}")
        if codes.min() < 0 or codes.max() >= num_codes_per_level:
            raise DataError(f"SID codes must lie in [0, {num_codes_per_level}), got [{codes.min()}, {codes.max()}]")
        codes = codes.astype(np.int64)
        level_sizes = (num_codes_per_level,) * codes.shape[1]
        # The largest possible extra digit is N - 1: check the whole key space fits an int64.
        if np.prod([float(s) for s in level_sizes]) * len(codes) >= 2.0**63:
            raise DataError(f"{codes.shape[1]} levels of {num_codes_per_level} codes do not fit 64-bit SID keys")
        if dedup == "random":
            return cls(codes, codes.copy(), dedup, level_sizes)
        keys = sid_keys(codes, level_sizes)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        group_starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        group_sizes = np.diff(np.r_[group_starts, len(keys)])
        digit = np.empty(len(keys), dtype=np.int64)
        digit[order] = np.arange(len(keys)) - np.repeat(group_starts, group_sizes)
        size = max(int(group_sizes.max()) + reserve, digit_size)
        return cls(codes, np.column_stack([codes, digit]), dedup, level_sizes + (size,))

    @property
    def num_items(self) -> int:
        return len(self.sids)

    @property
    def num_codes_per_level(self) -> int:
        return self.level_sizes[0]

    def lookup(self, sids: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """(M, L') SIDs -> (M,) item index, -1 where no item has that SID. With dedup="random" a SID
        shared by several items gives one of them, drawn with ``rng``."""
        if self.dedup == "random" and rng is None:
            raise ValueError("dedup='random' picks among items sharing a SID: pass a seeded rng")
        lo, hi = self._key_ranges(sids)
        pick = lo if rng is None else lo + rng.integers(0, np.maximum(hi - lo, 1))
        items = self._sorted_items[np.minimum(pick, self.num_items - 1)]
        return np.where(hi > lo, items, -1)

    def items_of(self, sid: np.ndarray) -> np.ndarray:
        """All items (ascending) whose SID is ``sid``, a length-L' sequence."""
        lo, hi = self._key_ranges(np.reshape(sid, (1, -1)))
        return self._sorted_items[lo[0]:hi[0]]

    def _key_ranges(self, sids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(M, L') SIDs -> where each one's items start and end in the sorted keys (empty if none)."""
        sids = np.asarray(sids, dtype=np.int64)
        if sids.ndim != 2 or sids.shape[1] != len(self.level_sizes):
            raise ValueError(f"expected (M, {len(self.level_sizes)}) SIDs, got shape {sids.shape}")
        in_range = ((sids >= 0) & (sids < np.asarray(self.level_sizes))).all(1)
        # An out-of-range digit would alias another SID's key: key such rows as 0 and give them no items.
        keys = sid_keys(np.where(in_range[:, None], sids, 0), self.level_sizes)
        lo = np.searchsorted(self._sorted_keys, keys, side="left")
        hi = np.where(in_range, np.searchsorted(self._sorted_keys, keys, side="right"), lo)
        return lo, hi

    def add_items(self, new_codes: np.ndarray) -> "SIDTable":
        """Cold start: a new table with items appended. Old items keep their SIDs because the
        extra digit numbers a collision group in item order and new items come last; the digit keeps
        its level size unless a group outgrows it."""
        new_codes = np.asarray(new_codes)
        if new_codes.ndim != 2 or new_codes.shape[1] != self.codes.shape[1]:
            raise DataError(f"new codes must be (M, {self.codes.shape[1]}), got shape {new_codes.shape}")
        return SIDTable.build(np.concatenate([self.codes, new_codes]), self.num_codes_per_level, self.dedup,
                              digit_size=_digit_size(self.dedup, self.level_sizes))

    def save(self, path: str | Path) -> None:
        write_npz(path, codes=self.codes, sids=self.sids, dedup=np.array(self.dedup),
                  level_sizes=np.array(self.level_sizes))

    @classmethod
    def load(cls, path: str | Path) -> "SIDTable":
        path = Path(path)
        if not path.is_file():
            raise ArtifactError(f"{path}: SID table not found")
        names = ("codes", "sids", "dedup", "level_sizes")
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in names if k in f.files}
        except Exception as exc:  # a damaged npz raises zip, pickle or value errors
            raise ArtifactError(f"{path}: not a readable SID table ({type(exc).__name__})") from None
        missing = [k for k in names if k not in arrays]
        if missing:
            raise ArtifactError(f"{path}: SID table lacks the array(s) {', '.join(missing)}")
        codes, sids, level_sizes = arrays["codes"], arrays["sids"], arrays["level_sizes"]
        named = {"codes": (codes, 2), "sids": (sids, 2), "level_sizes": (level_sizes, 1)}
        if any(a.ndim != n or not np.issubdtype(a.dtype, np.integer) for a, n in named.values()):
            found = ", ".join(f"{k} {a.dtype}{a.shape}" for k, (a, _) in named.items())
            raise ArtifactError(f"{path}: SID table arrays have wrong shapes or types ({found})")
        if len(level_sizes) == 0:
            raise ArtifactError(f"{path}: SID table has no level sizes")
        try:
            dedup = str(arrays["dedup"])
            table = cls.build(codes, int(level_sizes[0]), dedup, digit_size=_digit_size(dedup, level_sizes))
        except (ConfigError, DataError) as exc:
            raise ArtifactError(f"{path}: invalid SID table: {exc}") from None
        if not np.array_equal(table.sids, sids) or table.level_sizes != tuple(level_sizes.tolist()):
            raise ArtifactError(f"{path}: SID table is inconsistent (SIDs or level sizes do not follow from the codes)")
        return table
