"""Batched beam search over SIDs, and the mapping of the beams to recommended items.

The model protocol (sidrec.models implements it; tests use a fake):

    logits, cache = model.prefill(input_ids (B, S), attention_mask (B, S))   # logits (B, V), 1st SID token
    logits, cache = model.decode_step(tokens (B,), cache)                     # logits for the next token
    cache = model.reorder_cache(cache, index (B',))                           # rows of the batch dim

The first ``reorder_cache`` expands users to beams (``index = arange(B).repeat_interleave(num_beams)``,
user b's beams are rows b * num_beams ...); every later one only moves rows within a user's block of
``num_beams`` rows. State shared by all of a user's beams (encoder output, cross-attention keys and
values) can therefore be expanded once and left in place afterwards.

Scoring. A beam's score is the sum over its L' tokens of ``log_softmax(logits)`` over the FULL
vocabulary, i.e. the model's own log-probability of the SID (what teacher forcing gives). Tokens
that are not allowed at a step (other SID levels, special and user tokens, and in constrained mode
prefixes absent from the trie) are set to -inf after normalising, not renormalised away. Why:
scores are then the same quantity in constrained and free-form search and under any catalog; a
renormalised score would depend on the trie (an SID whose prefix has a single child would get its
last token for free, favouring items without collisions), and Hugging Face's
``prefix_allowed_tokens_fn`` scores the same way, so the two searches can be compared beam for beam.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from sidrec.decode.trie import PrefixTrie
from sidrec.tokenize.vocab import PAD, SIDVocab


@torch.inference_mode()
def beam_search(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, vocab: SIDVocab, num_beams: int,
                trie: PrefixTrie | None = None, prefilled: tuple | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``num_beams`` SIDs per user, best first.

    Returns ``sid_tokens`` Long(B, num_beams, L') token ids and ``scores`` Float(B, num_beams). With a
    trie (constrained) every beam is a valid SID, except where fewer than ``num_beams`` exist: those
    beams have score -inf and PAD tokens. Without a trie (free-form) only the level ranges apply, so
    beams may be SIDs of no item. The model is used as is (call ``model.eval()`` first).

    ``prefilled``: ``model.prefill(input_ids, attention_mask)`` computed before, so that several
    searches over the same histories (e.g. the cold-start search over new items only) encode them
    once. The search never writes into it: its first step expands users to beams into new tensors.
    """
    if trie is not None and trie.num_levels != vocab.num_levels:
        raise ValueError(f"trie has {trie.num_levels} levels, vocab {vocab.num_levels}")
    logits, cache = model.prefill(input_ids, attention_mask) if prefilled is None else prefilled
    batch_size, device = logits.shape[0], logits.device
    nodes = None  # trie node of every beam (constrained only)
    if trie is not None:
        trie = trie.to(device)
        nodes = trie.root(batch_size)
    start, width = vocab.level_offsets[0], vocab.level_sizes[0]
    log_probs = _allowed_log_probs(logits, start, width, trie, nodes)

    # Step 0: one distribution per user, so take its top tokens directly (no duplicate beams).
    scores, codes = log_probs.topk(min(num_beams, width), dim=-1)
    if width < num_beams:  # fewer first-level codes than beams: the rest start dead
        scores = torch.cat([scores, scores.new_full((batch_size, num_beams - width), -torch.inf)], dim=1)
        codes = torch.cat([codes, codes.new_zeros((batch_size, num_beams - width))], dim=1)
    tokens = codes + start  # (B, beams)
    sequences = [tokens]
    cache = model.reorder_cache(cache, torch.arange(batch_size, device=device).repeat_interleave(num_beams))
    if trie is not None:
        nodes = trie.advance(nodes.repeat_interleave(num_beams), tokens.flatten())

    user_row = torch.arange(batch_size, device=device)[:, None] * num_beams
    for level in range(1, vocab.num_levels):
        logits, cache = model.decode_step(tokens.flatten(), cache)
        start, width = vocab.level_offsets[level], vocab.level_sizes[level]
        log_probs = _allowed_log_probs(logits, start, width, trie, nodes)
        candidates = scores[:, :, None] + log_probs.view(batch_size, num_beams, width)
        scores, flat = candidates.view(batch_size, num_beams * width).topk(num_beams, dim=-1)
        parent, codes = flat // width, flat % width
        tokens = codes + start
        sequences = [seq.gather(1, parent) for seq in sequences] + [tokens]
        if level + 1 < vocab.num_levels:  # the last step needs neither the cache nor the trie node
            rows = (user_row + parent).flatten()
            cache = model.reorder_cache(cache, rows)
            if trie is not None:
                nodes = trie.advance(nodes[rows], tokens.flatten())

    sid_tokens = torch.stack(sequences, dim=-1)
    sid_tokens = sid_tokens.masked_fill(~torch.isfinite(scores)[..., None], PAD)
    return sid_tokens, scores


def _allowed_log_probs(logits: torch.Tensor, start: int, width: int, trie: PrefixTrie | None,
                       nodes: torch.Tensor | None) -> torch.Tensor:
    """Log-probs (M, width) of one SID level's tokens, normalised over the full vocabulary; -inf
    where the trie (if any) has no such child."""
    log_probs = logits.float().log_softmax(dim=-1)[:, start:start + width]
    if trie is None:
        return log_probs
    return log_probs.masked_fill(~trie.next_token_mask(nodes, start, start + width), -torch.inf)


def recommend(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, vocab: SIDVocab,
              trie: PrefixTrie | None, sid_lookup: Callable[..., np.ndarray], k: int, num_beams: int,
              exclude=None, rng: np.random.Generator | None = None,
              prefilled: tuple | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` items per user: Long(B, k) item indices (-1 where fewer were found) and their beam
    scores Float(B, k) (-inf there), in beam order.

    ``sid_lookup(codes (M, L')) -> (M,)`` maps SID codes (not tokens) to an item index or -1; it is
    called as ``sid_lookup(codes, rng=rng)`` when ``rng`` is given (random de-dup picks one of the
    items sharing an SID). SIDs of no item (free-form) and repeated items are dropped. ``exclude``
    (e.g. the history) is a list of item collections per user or a padded (B, H) array/tensor whose
    negative entries are padding; those items are never returned. ``prefilled``: see ``beam_search``.
    """
    sid_tokens, scores = beam_search(model, input_ids, attention_mask, vocab, num_beams, trie, prefilled)
    batch_size = sid_tokens.shape[0]
    codes = vocab.tokens_to_sid(sid_tokens.cpu().numpy().reshape(-1, vocab.num_levels))
    items = np.asarray(sid_lookup(codes) if rng is None else sid_lookup(codes, rng=rng), dtype=np.int64)
    items = items.reshape(batch_size, num_beams)
    scores = scores.cpu().numpy()

    keep = np.isfinite(scores) & (items >= 0) & ~_repeated(items)
    if exclude is not None:
        keep &= ~_excluded(items, exclude)
    # Stable sort moves the kept beams to the front of each row in their beam order.
    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
    kept = np.take_along_axis(keep, order, axis=1)
    top_items = np.where(kept, np.take_along_axis(items, order, axis=1), -1)
    top_scores = np.where(kept, np.take_along_axis(scores, order, axis=1), -np.inf)
    if top_items.shape[1] < k:  # fewer beams than k
        pad = k - top_items.shape[1]
        top_items = np.pad(top_items, ((0, 0), (0, pad)), constant_values=-1)
        top_scores = np.pad(top_scores, ((0, 0), (0, pad)), constant_values=-np.inf)
    return torch.from_numpy(top_items), torch.from_numpy(top_scores.astype(np.float32))


def _repeated(items: np.ndarray) -> np.ndarray:
    """Bool (B, n): True where the item already appeared earlier in its row."""
    order = np.argsort(items, axis=1, kind="stable")
    ranked = np.take_along_axis(items, order, axis=1)
    repeat_sorted = np.zeros_like(items, dtype=bool)
    repeat_sorted[:, 1:] = ranked[:, 1:] == ranked[:, :-1]
    repeated = np.empty_like(repeat_sorted)
    np.put_along_axis(repeated, order, repeat_sorted, axis=1)
    return repeated


def _excluded(items: np.ndarray, exclude) -> np.ndarray:
    """Bool (B, n): True where ``items[b, j]`` is among user b's excluded items."""
    batch_size = len(items)
    if isinstance(exclude, torch.Tensor):
        exclude = exclude.cpu().numpy()
    if isinstance(exclude, np.ndarray):
        if exclude.shape[0] != batch_size or exclude.ndim != 2:
            raise ValueError(f"exclude must be (B={batch_size}, H), got shape {exclude.shape}")
        users = np.broadcast_to(np.arange(batch_size)[:, None], exclude.shape)
        users, excluded_items = users[exclude >= 0], exclude[exclude >= 0]
    else:
        if len(exclude) != batch_size:
            raise ValueError(f"exclude has {len(exclude)} users, batch has {batch_size}")
        lengths = np.fromiter((len(e) for e in exclude), dtype=np.int64, count=batch_size)
        users = np.repeat(np.arange(batch_size), lengths)
        excluded_items = np.fromiter((int(i) for e in exclude for i in e), dtype=np.int64, count=int(lengths.sum()))
    # One int64 key per (user, item) pair turns the per-user membership test into one np.isin.
    stride = int(max(items.max(initial=0), excluded_items.max(initial=0))) + 1
    return np.isin(np.arange(batch_size)[:, None] * stride + items, users * stride + excluded_items)
