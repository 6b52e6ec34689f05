"""Python API over a finished run directory: ``Recommender.load(run_dir).recommend(history, k=10)``.

Loads artifacts only (config, item table, SID table, model.pt); imports no training code.
Histories are given by external item ids (the dataset's ``item_id`` or the ASIN).
"""

from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sidrec.checkpoint import check_meta, load_model_file
from sidrec.config import RunConfig, load_config
from sidrec.data.dataset import Dataset
from sidrec.data.split import PAD_ITEM, training_items
from sidrec.errors import DataError
from sidrec.evaluate.runner import Ranker
from sidrec.tokenize.sid_table import SIDTable
from sidrec.vocab import SIDVocab


@dataclass
class Recommendation:
    index: int  # internal item index
    item_id: str
    asin: str | None
    title: str | None
    sid: list[int]
    score: float  # log-probability of the SID under the model (nan for the empty-history fallback)


class Recommender:
    def __init__(self, cfg: RunConfig, dataset: Dataset, sid_table: SIDTable, model: torch.nn.Module,
                 device: str = "cpu"):
        self.cfg, self.dataset, self.sid_table, self.model = cfg, dataset, sid_table, model.to(device).eval()
        vocab = SIDVocab(tuple(sid_table.level_sizes), cfg.model.num_user_tokens)
        # Empty histories (documented fallback): the most popular items of the training interactions.
        counts = np.bincount(training_items(dataset), minlength=dataset.num_items)
        popular = np.argsort(-counts, kind="stable")
        self.ranker = Ranker(sid_table, vocab, cfg.decode, device, fallback_items=popular)
        self.item_index = dataset.item_index()
        self.item_index.update({item["asin"]: i for i, item in enumerate(dataset.items) if item.get("asin")})
        self.user_index = {u: i for i, u in enumerate(dataset.user_ids)}
        self.rng = np.random.default_rng(cfg.seed)

    @classmethod
    def load(cls, run_dir: str | Path, device: str = "cpu") -> "Recommender":
        run_dir = Path(run_dir)
        cfg = load_config(run_dir / "config.json")
        sid_table = SIDTable.load(run_dir / "sid_table.npz")
        model, meta = load_model_file(run_dir / "model.pt")
        check_meta(meta, sid_table.sids, SIDVocab(tuple(sid_table.level_sizes), cfg.model.num_user_tokens),
                   str(run_dir / "model.pt"))
        return cls(cfg, Dataset.load(run_dir), sid_table, model, device)

    def _indices(self, history: list, row: int) -> list[int]:
        indices = []
        for item in history:
            index = self.item_index.get(str(item))
            if index is None:
                message = f"history {row}: item {item!r} is not in the catalog"
                if self.cfg.decode.unknown_items == "error":
                    raise DataError(message + " (set decode.unknown_items=skip to drop unknown items)")
                warnings.warn(message + "; skipped", stacklevel=3)
                continue
            indices.append(index)
        return indices

    def _user_index(self, user_id) -> int:
        if user_id is None:
            return 0
        # Unknown users still get a stable user token: hash of their id.
        return self.user_index.get(str(user_id), zlib.crc32(str(user_id).encode()))

    def recommend_many(self, histories: list[list], k: int = 10, user_ids: list | None = None,
                       exclude: list[list] | None = None) -> list[list[Recommendation]]:
        h = self.cfg.model.max_history
        rows = [self._indices(history, row)[-h:] for row, history in enumerate(histories)]
        matrix = np.full((len(rows), h), PAD_ITEM, dtype=np.int64)
        for r, idx in enumerate(rows):
            if idx:
                matrix[r, -len(idx):] = idx
        users = torch.as_tensor([self._user_index(u) for u in (user_ids or [None] * len(rows))])
        excluded = [set(self._indices(e, r)) for r, e in enumerate(exclude)] if exclude else [set()] * len(rows)
        # Over-fetch so that excluded items can be dropped and still leave k.
        extra = max((len(e) for e in excluded), default=0)
        items, scores = self.ranker.rank(self.model, torch.from_numpy(matrix), users, k + extra, self.rng)
        results = []
        for r in range(len(rows)):
            keep = [(int(i), float(s)) for i, s in zip(items[r], scores[r]) if i >= 0 and int(i) not in excluded[r]]
            results.append([self._describe(i, s) for i, s in keep[:k]])
        return results

    def recommend(self, history: list, k: int = 10, user_id=None, exclude: list | None = None) -> list[Recommendation]:
        return self.recommend_many([history], k, [user_id], [exclude] if exclude else None)[0]

    def _describe(self, index: int, score: float) -> Recommendation:
        item = self.dataset.items[index]
        return Recommendation(index, item["item_id"], item.get("asin"), item.get("title"),
                              self.sid_table.sids[index].tolist(), score)
