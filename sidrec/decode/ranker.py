"""Histories -> ranked items: beam search over SIDs (constrained by the prefix trie), mapped to items.

The one inference entry point: training validation, evaluation, batch prediction, experiments and
serving all call ``Ranker.rank``. It takes plain values, not a config, and imports no training code.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from sidrec.decode.beam_search import recommend
from sidrec.decode.trie import PrefixTrie
from sidrec.tokenize.batching import TokenBatcher
from sidrec.tokenize.sid_table import SIDTable
from sidrec.tokenize.vocab import SIDVocab

PRECISIONS = ("fp32", "bf16")


class Ranker:
    """Everything needed besides the network to turn histories into ranked item lists."""

    def __init__(self, sid_table: SIDTable, vocab: SIDVocab, num_beams: int = 10, constrained: bool = True,
                 exclude_history: bool = False, device="cpu", fallback_items: np.ndarray | None = None,
                 items: np.ndarray | None = None, precision: str = "fp32"):
        """``items``: constrain decoding to these items' SIDs (default: the whole table).
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

    def to(self, device) -> "Ranker":
        self.device = torch.device(device)
        self.batcher.to(device)
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
        input_ids, mask = self.batcher.inputs(histories, users)
        exclude = histories if self.exclude_history else None
        with self._autocast():
            items, item_scores = recommend(model, input_ids, mask, self.vocab, self.trie, self.sid_table.lookup,
                                           k=k, num_beams=max(self.num_beams, k), exclude=exclude, rng=rng,
                                           prefilled=prefilled)
        ranked[~empty] = items.cpu().numpy()
        scores[~empty] = item_scores.float().cpu().numpy()
        return ranked, scores
