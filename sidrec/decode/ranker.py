"""Histories -> ranked items: beam search over SIDs (constrained by the prefix trie), mapped to items,
or, for a model that scores the whole catalog (``ranks_catalog``, e.g. ``model.arch=item_sid``), an
exact top-k over every item's score.

The one inference entry point: training validation, evaluation, batch prediction, experiments and
serving all call ``Ranker.rank``. It takes plain values, not a config, and imports no training code.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

from sidrec.decode.beam_search import recommend
from sidrec.decode.trie import PrefixTrie
from sidrec.tokenize.batching import TokenBatcher
from sidrec.tokenize.sid_table import SIDTable
from sidrec.tokenize.vocab import SIDVocab

PRECISIONS = ("fp32", "bf16")


def exclude_items_(scores: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Sets ``scores[b, items[b, j]]`` to -inf for every real (>= 0) entry of the (B, H) ``items``
    (e.g. left-padded histories), in place; returns ``scores``."""
    rows, cols = (items >= 0).nonzero(as_tuple=True)
    scores[rows, items[rows, cols]] = float("-inf")
    return scores


@dataclass
class ItemFeatures:
    """The catalog as an item-scoring model reads it: (N, L) SID digits and (N, D) unit-norm text
    embeddings (D = 0 without text)."""

    sids: torch.Tensor
    text: torch.Tensor

    @classmethod
    def build(cls, sids: np.ndarray, text: np.ndarray | None, device="cpu") -> "ItemFeatures":
        if text is None:
            text = np.zeros((len(sids), 0), dtype=np.float32)
        text = torch.from_numpy(np.array(text, dtype=np.float32)).to(device)  # a copy: the input may be a read-only memory map
        if text.shape[1]:
            text = text / text.norm(dim=1, keepdim=True).clamp(min=1e-12)
        return cls(torch.as_tensor(sids, dtype=torch.long, device=device), text)

    def to(self, device) -> "ItemFeatures":
        return ItemFeatures(self.sids.to(device), self.text.to(device))


class Ranker:
    """Everything needed besides the network to turn histories into ranked item lists."""

    def __init__(self, sid_table: SIDTable, vocab: SIDVocab, num_beams: int = 10, constrained: bool = True,
                 exclude_history: bool = False, device="cpu", fallback_items: np.ndarray | None = None,
                 items: np.ndarray | None = None, precision: str = "fp32", item_text: np.ndarray | None = None):
        """``items``: constrain decoding to these items' SIDs (default: the whole table).
        ``item_text``: (N, D) text embeddings of the table's items, for models that read them.
        ``exclude_history``: never recommend an item of the user's own history.
        ``precision``: fp32, or bf16 (autocast: the network runs in bfloat16, beam scores are summed
        in fp32)."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision={precision!r}: expected one of {', '.join(PRECISIONS)}")
        self.sid_table, self.vocab, self.precision = sid_table, vocab, precision
        self.num_beams, self.constrained, self.exclude_history = num_beams, constrained, exclude_history
        # Ranked items for users with an empty history (e.g. by popularity); the model needs >= 1 item.
        self.fallback_items = fallback_items
        sid_tokens = vocab.sid_to_tokens(sid_table.sids)
        self.batcher = TokenBatcher(sid_tokens, vocab, device)
        if constrained:
            self.trie = PrefixTrie.from_sids(sid_tokens if items is None else sid_tokens[items])
        elif items is not None:
            raise ValueError("restricting decoding to some items needs constrained decoding")
        else:
            self.trie = None
        self.device = torch.device(device)
        self._item_text, self._features = item_text, None
        self.item_mask = None  # exact ranking: True for the items that may be returned
        if items is not None:
            self.item_mask = torch.zeros(sid_table.num_items, dtype=torch.bool)
            self.item_mask[torch.as_tensor(items, dtype=torch.long)] = True

    @property
    def features(self) -> ItemFeatures:
        """The catalog for item-scoring models (built on first use: beam-search models never need it)."""
        if self._features is None:
            if self._item_text is not None and len(self._item_text) != self.sid_table.num_items:
                raise ValueError(f"{len(self._item_text)} text embeddings for {self.sid_table.num_items} items")
            self._features = ItemFeatures.build(self.sid_table.sids, self._item_text, self.device)
        return self._features

    def to(self, device) -> "Ranker":
        self.device = torch.device(device)
        self.batcher.to(device)
        if self._features is not None:
            self._features = self._features.to(device)
        if self.item_mask is not None:
            self.item_mask = self.item_mask.to(device)
        if self.trie is not None:
            self.trie = self.trie.to(device)
        return self

    def _autocast(self):
        # fp32 keeps the caller's context: plain fp32 at test and serving time, the trainer's autocast
        # during validation (an autocast(enabled=False) here would switch that off).
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def _non_empty(self, histories: torch.Tensor, users: torch.Tensor | None):
        """(empty rows as a numpy mask, the other rows' histories on the device, their users)."""
        histories = histories.to(self.device)
        empty = (histories < 0).all(dim=1)
        if empty.any():
            keep = ~empty
            histories, users = histories[keep], (users[keep.to(users.device)] if users is not None else None)
        return empty.cpu().numpy(), histories, users

    @torch.no_grad()
    def prefill(self, model, histories: torch.Tensor, users: torch.Tensor | None):
        """The model's encoder pass over the non-empty histories, for ``rank(..., prefilled=)``: a
        second search over the same histories (another Ranker over the same SID table, e.g. new
        items only) then reuses it instead of encoding them again."""
        empty, histories, users = self._non_empty(histories, users)
        if empty.all():
            return None
        with self._autocast():
            if getattr(model, "ranks_catalog", False):
                return model.user_states(histories, self.features)
            return model.prefill(*self.batcher.inputs(histories, users))

    @torch.no_grad()
    def rank(self, model, histories: torch.Tensor, users: torch.Tensor, k: int,
             rng: np.random.Generator, prefilled: tuple | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(B, H) item histories (-1 = padding) -> (B, k) item indices (-1 where fewer were found) and
        their beam scores (log-probability of the SID; -inf where no item, nan for fallback items).

        Rows with an empty history get ``fallback_items[:k]``; without a fallback they are an error.
        ``prefilled``: ``prefill(model, histories, users)`` of a Ranker over the same SID table."""
        empty, histories, users = self._non_empty(histories, users)
        ranked = np.full((len(empty), k), -1, dtype=np.int64)
        scores = np.full((len(empty), k), -np.inf, dtype=np.float32)
        if empty.any():
            if self.fallback_items is None:
                raise ValueError(f"{int(empty.sum())} histories are empty and this ranker has no fallback items")
            fallback = self.fallback_items[:k]
            ranked[empty, : len(fallback)] = fallback
            scores[empty, : len(fallback)] = np.nan
        if empty.all():
            return ranked, scores
        if getattr(model, "ranks_catalog", False):
            items, item_scores = self._top_k(model, histories, k, prefilled)
            ranked[~empty], scores[~empty] = items, item_scores
            return ranked, scores
        input_ids, mask = self.batcher.inputs(histories, users)
        exclude = histories if self.exclude_history else None
        with self._autocast():
            items, item_scores = recommend(model, input_ids, mask, self.vocab, self.trie, self.sid_table.lookup,
                                           k=k, num_beams=max(self.num_beams, k), exclude=exclude, rng=rng,
                                           prefilled=prefilled)
        ranked[~empty] = items.cpu().numpy()
        scores[~empty] = item_scores.float().cpu().numpy()
        return ranked, scores

    def _top_k(self, model, histories: torch.Tensor, k: int, prefilled) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k of an item-scoring model over the allowed items (-1 / -inf where fewer exist)."""
        with self._autocast():
            states = prefilled if prefilled is not None else model.user_states(histories, self.features)
            scores = model.scores(states, self.features, histories[:, -1]).float()
        if self.item_mask is not None:
            scores = scores.masked_fill(~self.item_mask, float("-inf"))
        if self.exclude_history:
            exclude_items_(scores, histories)
        top = scores.topk(min(k, scores.shape[1]), dim=1)
        items, values = top.indices.cpu().numpy(), top.values.cpu().numpy()
        items = np.where(np.isfinite(values), items, -1)
        if items.shape[1] < k:
            pad = ((0, 0), (0, k - items.shape[1]))
            items, values = np.pad(items, pad, constant_values=-1), np.pad(values, pad, constant_values=-np.inf)
        return items, values
