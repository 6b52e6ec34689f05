"""Histories -> ranked items (beam search over SIDs, mapped to items) and full-catalog metrics.

Used by validation during training, by ``sidrec evaluate`` and by serving; imports no training code.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from sidrec.batching import TokenBatcher
from sidrec.config import DecodeConfig
from sidrec.data.split import Samples
from sidrec.decode.beam_search import recommend
from sidrec.decode.trie import PrefixTrie
from sidrec.evaluate.metrics import compute_metrics
from sidrec.tokenize.sid_table import SIDTable
from sidrec.vocab import SIDVocab


class Ranker:
    """Everything needed besides the network to turn histories into ranked item lists."""

    def __init__(self, sid_table: SIDTable, vocab: SIDVocab, decode: DecodeConfig, device="cpu",
                 fallback_items: np.ndarray | None = None, items: np.ndarray | None = None):
        """``items``: constrain decoding to these items' SIDs (default: the whole table)."""
        self.sid_table, self.vocab, self.decode = sid_table, vocab, decode
        # Ranked items for users with an empty history (e.g. by popularity); the model needs >= 1 item.
        self.fallback_items = fallback_items
        sid_tokens = vocab.sid_to_tokens(sid_table.sids)
        self.batcher = TokenBatcher(sid_tokens, vocab, device)
        if decode.constrained:
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

    @torch.no_grad()
    def rank(self, model, histories: torch.Tensor, users: torch.Tensor, k: int,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(B, H) item histories (-1 = padding) -> (B, k) item indices (-1 where fewer were found) and
        their beam scores (log-probability of the SID; -inf where no item, nan for fallback items).

        Rows with an empty history get ``fallback_items[:k]``; without a fallback they are an error."""
        histories = histories.to(self.device)
        empty = (histories < 0).all(dim=1).cpu().numpy()
        ranked = np.full((len(histories), k), -1, dtype=np.int64)
        scores = np.full((len(histories), k), -np.inf, dtype=np.float32)
        if empty.any():
            if self.fallback_items is None:
                raise ValueError(f"{int(empty.sum())} histories are empty and this ranker has no fallback items")
            fallback = self.fallback_items[:k]
            ranked[empty, : len(fallback)] = fallback
            scores[empty, : len(fallback)] = np.nan
        if empty.all():
            return ranked, scores
        keep = torch.as_tensor(~empty, device=histories.device)
        histories, users = histories[keep], (users[keep.to(users.device)] if users is not None else None)
        input_ids, mask = self.batcher.inputs(histories, users)
        exclude = histories if self.decode.exclude_history else None
        items, item_scores = recommend(model, input_ids, mask, self.vocab, self.trie, self.sid_table.lookup, k=k,
                                       num_beams=max(self.decode.num_beams, k), exclude=exclude, rng=rng)
        ranked[~empty] = items.cpu().numpy()
        scores[~empty] = item_scores.float().cpu().numpy()
        return ranked, scores


def rank_samples(model, ranker: Ranker, samples: Samples, k: int, batch_size: int, seed: int,
                 progress: bool = True, desc: str = "ranking") -> np.ndarray:
    """Ranked items per sample, in the samples' order. Batches are formed over the samples sorted by
    history length, so a batch carries little padding (the models' outputs do not depend on it)."""
    rng = np.random.default_rng(seed)
    order = np.argsort(samples.history_lengths(), kind="stable")
    ranked = np.zeros((len(samples), k), dtype=np.int64)
    was_training = model.training
    model.eval()
    for start in tqdm(range(0, len(samples), batch_size), desc=desc, disable=not progress, leave=False):
        rows = order[start : start + batch_size]
        ranked[rows] = ranker.rank(model, torch.from_numpy(samples.histories[rows]),
                                   torch.from_numpy(samples.users[rows]), k, rng)[0]
    model.train(was_training)
    return ranked


def evaluate(model, ranker: Ranker, samples: Samples, ks: list[int], batch_size: int, seed: int,
             progress: bool = True, desc: str = "evaluating") -> dict[str, float]:
    ranked = rank_samples(model, ranker, samples, max(ks), batch_size, seed, progress, desc)
    return compute_metrics(ranked, samples.targets, ks=ks)
