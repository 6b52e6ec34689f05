"""Token layout shared by training, decoding and serving.

    0                      PAD
    1                      BOS (decoder start; separates history from target in decoder-only)
    2 ..                   SID level 0 codes, then level 1 codes, ... each level its own range
    ..                     user tokens (hashed user id), num_user_tokens of them

A SID code ``c`` at level ``l`` is token ``level_offsets[l] + c``. The de-dup digit, when used, is
simply one more level whose size is the largest collision group.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PAD = 0
BOS = 1
NUM_SPECIAL = 2


@dataclass(frozen=True)
class SIDVocab:
    level_sizes: tuple[int, ...]  # codes per SID level (incl. the de-dup digit level, if any)
    num_user_tokens: int = 0

    @property
    def num_levels(self) -> int:
        return len(self.level_sizes)

    @property
    def level_offsets(self) -> tuple[int, ...]:
        offsets, start = [], NUM_SPECIAL
        for size in self.level_sizes:
            offsets.append(start)
            start += size
        return tuple(offsets)

    @property
    def user_offset(self) -> int:
        return NUM_SPECIAL + sum(self.level_sizes)

    @property
    def size(self) -> int:
        return self.user_offset + self.num_user_tokens

    def sid_to_tokens(self, codes: np.ndarray) -> np.ndarray:
        """(..., L) integer codes -> (..., L) token ids."""
        return np.asarray(codes, dtype=np.int64) + np.asarray(self.level_offsets, dtype=np.int64)

    def tokens_to_sid(self, tokens: np.ndarray) -> np.ndarray:
        return np.asarray(tokens, dtype=np.int64) - np.asarray(self.level_offsets, dtype=np.int64)

    def user_token(self, user_index: np.ndarray) -> np.ndarray:
        """Hash of the user index into the user-token range (TIGER). Stable across runs."""
        if self.num_user_tokens <= 0:
            raise ValueError("user tokens are off (num_user_tokens=0)")
        h = (np.asarray(user_index, dtype=np.uint64) * np.uint64(2654435761)) % np.uint64(2**32)
        return (h % np.uint64(self.num_user_tokens)).astype(np.int64) + self.user_offset

    @classmethod
    def for_table(cls, sid_table, num_user_tokens: int = 0) -> "SIDVocab":
        """The vocabulary of a ``SIDTable`` (the one place a vocabulary is built from a table)."""
        return cls(tuple(int(s) for s in sid_table.level_sizes), num_user_tokens)

    def to_dict(self) -> dict:
        return {"level_sizes": list(self.level_sizes), "num_user_tokens": self.num_user_tokens}

    @classmethod
    def from_dict(cls, d: dict) -> "SIDVocab":
        return cls(tuple(int(x) for x in d["level_sizes"]), int(d.get("num_user_tokens", 0)))
