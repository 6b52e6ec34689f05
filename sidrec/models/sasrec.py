"""SASRec (Kang & McAuley, 2018): causal self-attention over item ids, learned positions, scores over
all items by a dot product with the (shared) item embeddings. Plain PyTorch, nothing else.

Inputs are (B, T) item indices 0..N-1 with -1 as padding on the left (the layout of
``sidrec.data.split``). Internally index 0 is the padding embedding and item i is row i + 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PAD = -1


class SelfAttentionBlock(nn.Module):
    """Pre-LayerNorm transformer block: x + MHA(LN(x)), then x + FFN(LN(x))."""

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        self.num_heads, self.dropout = num_heads, dropout
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_ff, d_model))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        x = x + self.drop(self.out(a.transpose(1, 2).reshape(b, t, d)))
        return x + self.drop(self.ff(self.ln2(x)))


def causal_pass(x: torch.Tensor, pad: torch.Tensor, emb_drop: nn.Module, blocks: nn.ModuleList,
                final_ln: nn.Module) -> torch.Tensor:
    """The causal stack over a history's item vectors (SASRec's, and the item-level SID model's):
    ``x`` (B, T, d) item vectors with their positions added, ``pad`` (B, T) True at left padding ->
    (B, T, d) states, padding rows zeroed."""
    t = x.shape[1]
    x = emb_drop(x) * (~pad)[..., None]
    # Query i may attend to key j <= i that is not padding; every query may attend to itself so
    # that no row is fully masked (padding rows are zeroed anyway).
    causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
    allowed = causal[None] & ~pad[:, None, :]
    allowed = allowed | torch.eye(t, dtype=torch.bool, device=x.device)[None]
    mask = allowed[:, None]  # (B, 1, T, T), broadcast over heads
    for block in blocks:
        x = block(x, mask) * (~pad)[..., None]
    return final_ln(x)


class SASRec(nn.Module):
    def __init__(self, num_items: int, max_len: int = 50, d_model: int = 64, num_layers: int = 2,
                 num_heads: int = 1, d_ff: int = 256, dropout: float = 0.2):
        super().__init__()
        self.num_items, self.max_len = num_items, max_len
        self.item_emb = nn.Embedding(num_items + 1, d_model, padding_idx=0)
        self.pos_emb = nn.Embedding(max_len, d_model)
        self.emb_drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(SelfAttentionBlock(d_model, num_heads, d_ff, dropout) for _ in range(num_layers))
        self.final_ln = nn.LayerNorm(d_model)
        self.scale = d_model ** 0.5
        nn.init.normal_(self.item_emb.weight, std=0.02)
        nn.init.normal_(self.pos_emb.weight, std=0.02)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def hidden(self, items: torch.Tensor) -> torch.Tensor:
        """(B, T) item indices (-1 = padding, on the left) -> (B, T, d) states; position t has seen
        items[:, :t + 1] only. Padding positions are zeroed."""
        b, t = items.shape
        if t > self.max_len:  # keep the most recent max_len items
            items = items[:, -self.max_len:]
            t = self.max_len
        pad = items < 0
        # Positions count back from the most recent item, so the last item always has the same
        # position whatever the history length (left padding).
        positions = torch.arange(self.max_len - t, self.max_len, device=items.device)
        x = self.item_emb(items.clamp(min=-1) + 1) * self.scale + self.pos_emb(positions)[None]
        return causal_pass(x, pad, self.emb_drop, self.blocks, self.final_ln)

    def item_scores(self, states: torch.Tensor) -> torch.Tensor:
        """(..., d) states -> (..., N) scores over all items (the padding row is dropped)."""
        return states @ self.item_emb.weight[1:].T

    def loss(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Next-item cross-entropy over all items at every position with a label (labels -1 = none)."""
        states = self.hidden(inputs)
        labels = labels[:, -states.shape[1]:]
        keep = labels >= 0
        return F.cross_entropy(self.item_scores(states[keep]), labels[keep])

    @torch.no_grad()
    def score_last(self, histories: torch.Tensor) -> torch.Tensor:
        """(B, T) left-padded histories -> (B, N) scores for the next item."""
        return self.item_scores(self.hidden(histories)[:, -1])
