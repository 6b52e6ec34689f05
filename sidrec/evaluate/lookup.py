"""The text lookup: full-catalog scores from item text embeddings, no training.

A user's query is the recency-weighted mean of the unit embeddings of their last ``last_n`` history
items; every catalog item is scored by its cosine similarity to the query, one matmul per batch.
``text_lookup_scores`` returns those scores (to rank with, or to fuse with a trained model's);
``text_lookup_rank`` ranks whole splits with it (``sidrec lookup``, sidrec/baselines/lookup.py).
Histories are (B, H) item indices left-padded with -1, as ``sidrec.data.split.Samples`` holds them.
"""

from __future__ import annotations

import numpy as np
import torch

from sidrec.decode.ranker import exclude_items_

PAD_ITEM = -1  # as in sidrec.data.split


def unit_rows(embeddings) -> torch.Tensor:
    """The rows of an (N, D) matrix (numpy or torch) scaled to unit length, as float32."""
    return torch.nn.functional.normalize(torch.as_tensor(embeddings, dtype=torch.float32), dim=1)


def recency_weights(last_n: int, decay: float) -> torch.Tensor:
    """(last_n,) weights, oldest first: decay^(last_n - 1), ..., decay, 1."""
    return decay ** torch.arange(last_n - 1, -1, -1, dtype=torch.float32)


def text_lookup_scores(embeddings, histories, last_n: int = 1, decay: float = 0.5,
                       exclude_history: bool = True, normalized: bool = False) -> torch.Tensor:
    """(B, N) cosine similarities of the catalog's N items to each user's query, -inf where excluded.

    ``embeddings``: (N, D) item embeddings (numpy or torch; pass ``normalized=True`` when its rows
    already have unit length, e.g. from ``unit_rows``, to skip normalising it per batch).
    ``histories``: (B, H) item indices, left-padded with -1. The query is the weighted mean of the
    unit embeddings of the last ``last_n`` real items (weights ``recency_weights``). Excluded (score
    -inf): every history item with ``exclude_history``, else only the query's own items. A user
    without history items gets 0 for every item. Computed on ``embeddings``' device."""
    unit = torch.as_tensor(embeddings, dtype=torch.float32) if normalized else unit_rows(embeddings)
    hist = torch.as_tensor(histories, device=unit.device).long()
    if hist.ndim != 2:
        raise ValueError(f"histories must be (B, H), got shape {tuple(hist.shape)}")
    recent = hist[:, -last_n:]  # left padding: the most recent items are the last columns
    real = recent != PAD_ITEM
    weights = recency_weights(recent.shape[1], decay).to(unit.device) * real
    query = torch.einsum("bn,bnd->bd", weights, unit[recent.clamp(min=0)])
    scores = torch.nn.functional.normalize(query, dim=1) @ unit.T
    return exclude_items_(scores, hist if exclude_history else recent)


@torch.no_grad()
def text_lookup_rank(embeddings, histories: np.ndarray, k: int, batch_size: int = 1024, device: str = "cpu",
                     **options) -> np.ndarray:
    """(U, H) histories -> (U, k) item indices, best first, by ``text_lookup_scores(**options)``;
    -1 where fewer than k items are left after the exclusions."""
    unit = unit_rows(embeddings).to(device)
    k_eff = min(k, unit.shape[0])
    out = np.full((len(histories), k), PAD_ITEM, dtype=np.int64)
    for start in range(0, len(histories), batch_size):
        scores = text_lookup_scores(unit, histories[start:start + batch_size], normalized=True, **options)
        top = scores.topk(k_eff, dim=1)
        ranked = torch.where(torch.isfinite(top.values), top.indices, PAD_ITEM)
        out[start:start + len(ranked), :k_eff] = ranked.cpu().numpy()
    return out
