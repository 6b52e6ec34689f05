"""``predictions.jsonl``: one line per user with the ranked items, the one reader and writer of it.

    {"user_id": "A1X...", "items": ["B00...", ...], "scores": [-0.52, ...], "target": "B00..."}

``items`` are external item ids, best first; ``scores`` the log-probabilities of their SIDs under the
model (null for the empty-history fallback); ``target`` the held-out item (split predictions only).
Lines come in the order the users were ranked (by history length for a split). The file is written
to a temp file and renamed when complete, so a failed run leaves no half-written file.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from sidrec.data.readers import iter_json_lines
from sidrec.errors import DataError
from sidrec.io import atomic_path


class PredictionWriter:
    """``with PredictionWriter(path, item_ids, user_ids) as out: out.write(...)``; ``item_ids`` and
    ``user_ids`` map internal indices to external ids for ``write`` (``write_user`` takes ids)."""

    def __init__(self, path: str | Path, item_ids: list[str] | None = None, user_ids: list[str] | None = None):
        self.path, self.item_ids, self.user_ids = Path(path), item_ids, user_ids

    def __enter__(self) -> "PredictionWriter":
        self._atomic = atomic_path(self.path)
        self._fh = open(self._atomic.__enter__(), "w", encoding="utf-8")
        return self

    def __exit__(self, *exc) -> bool | None:
        self._fh.close()
        return self._atomic.__exit__(*exc)

    def write(self, users: np.ndarray, ranked: np.ndarray, scores: np.ndarray, targets: np.ndarray | None = None) -> None:
        """Rows of internal user indices, (b, k) item indices (-1 = none) and scores, optional targets."""
        for r, user in enumerate(users):
            keep = ranked[r] >= 0
            self.write_user(self.user_ids[int(user)] if self.user_ids is not None else str(user),
                            [self.item_ids[i] for i in ranked[r][keep]], scores[r][keep],
                            None if targets is None else self.item_ids[int(targets[r])])

    def write_user(self, user_id: str | None, items: list[str], scores, target: str | None = None) -> None:
        """One line: external ids, best first; nan scores (fallback items) are written as null."""
        line = {"user_id": user_id, "items": items,
                "scores": [None if math.isnan(s) else round(float(s), 5) for s in scores]}
        if target is not None:
            line["target"] = target
        self._fh.write(json.dumps(line, ensure_ascii=False) + "\n")


def read_predictions(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: predictions file not found")
    lines = []
    for n, line in iter_json_lines(path):
        if not isinstance(line.get("items"), list):
            raise DataError(f"{path}:{n}: expected an object with an 'items' list")
        lines.append(line)
    return lines


def read_histories_file(path: str | Path) -> tuple[list[str | None], list[list]]:
    """Users to predict for, one JSON object per line: ``{"user_id": "u1", "history": ["item", ...]}``
    (``user_id`` optional; items by item id or ASIN, oldest first) -> (user ids, histories)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: users file not found")
    user_ids, histories = [], []
    for n, line in iter_json_lines(path):
        history = line.get("history")
        if not isinstance(history, list):
            raise DataError(f"{path}:{n}: expected an object with a 'history' list of item ids")
        user = line.get("user_id")
        user_ids.append(None if user is None else str(user))
        histories.append(history)
    if not histories:
        raise DataError(f"{path}: no users")
    return user_ids, histories
