"""What both architectures share: their config, attention, dense and mixture-of-experts MLPs, a pre-norm block.

Conventions: activations are (batch, time, d_model); attention tensors are (batch, heads, time, d_kv);
boolean masks are True where attending is allowed (as in ``F.scaled_dot_product_attention``).

Padded batches are packed (``Packed``): token-wise layers (projections, MLPs, norms) run on the real
tokens only, and attention alone sees the padded (batch, time) layout. Sliding-window histories are
mostly short, so this skips most of the work on padding.

Dropout is applied to embeddings and to every sublayer output before it joins the residual stream,
not to attention probabilities: on CPU, attention dropout pushes SDPA off its fused kernel onto the
slower math path, for a regulariser these small models do not need.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class TransformerConfig:
    """The network of either architecture (``sidrec.models.build_model`` fills it from ``model.*``;
    model files import only torch, not sidrec.config)."""

    vocab_size: int
    num_layers: int = 4  # per stack: the encoder-decoder has two stacks, the decoder-only one
    num_heads: int = 6
    d_model: int = 128
    d_kv: int = 64  # per-head width; attention runs at num_heads * d_kv and projects back to d_model
    d_ff: int = 1024
    dropout: float = 0.1
    num_experts: int = 0  # 0 = dense MLP
    moe_top_k: int = 2
    max_source_len: int = 80  # history tokens (incl. a user token, if any)
    max_target_len: int = 4  # SID tokens per item
    bos_token_id: int = 1  # sidrec.tokenize.vocab.BOS
    # Encoder-decoder: source positions counted back from the most recent token, which then keeps
    # position 0 whatever the history length (T5's relative bias gives the same invariance); False:
    # from the oldest token.
    positions_from_end: bool = False
    # Decoder-only. True: [history, BOS, target] (next-item samples). False: a plain SID sequence, the
    # target follows the history directly (all-positions training, where every item is the previous
    # ones' target).
    bos_separator: bool = True


# attend(q, k, v) -> output, all (batch, heads, time, d_kv). Lets one block serve full-sequence
# training, cache-filling prefill and single-token decoding.
AttendFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    batch, time, _ = x.shape
    return x.view(batch, time, num_heads, -1).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    batch, heads, time, d_kv = x.shape
    return x.transpose(1, 2).reshape(batch, time, heads * d_kv)


class Packed:
    """The real tokens of a (B, S) batch (mask True) as rows (N, ...), and back."""

    def __init__(self, mask: torch.Tensor):
        self.batch_shape = mask.shape
        self.index = mask.reshape(-1).nonzero().squeeze(1)

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """(B, S, ...) -> (N, ...)"""
        return x.flatten(0, 1).index_select(0, self.index)

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        """(N, ...) -> (B, S, ...), zeros at padding."""
        padded = x.new_zeros(self.batch_shape.numel(), *x.shape[1:]).index_copy(0, self.index, x)
        return padded.view(*self.batch_shape, *x.shape[1:])


def pack_if_padded(mask: torch.Tensor) -> Packed | None:
    return None if bool(mask.all()) else Packed(mask)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None,
              is_causal: bool = False) -> torch.Tensor:
    """``F.scaled_dot_product_attention``, except in bf16/fp16 on CPU: there its fused kernels run
    forward + backward 3-7x slower than these three plain ops at our sizes (e.g. 142 vs 21 ms for
    (256, 6, 40, 64) on 2 cores), and the kernel is most of a bf16 training step. Softmax in fp32."""
    if q.device.type != "cpu" or q.dtype == torch.float32:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal)
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    if is_causal:  # top-left aligned, as in SDPA
        attn_mask = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    return scores.float().softmax(dim=-1).to(v.dtype) @ v


def sdpa_attend(attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> AttendFn:
    return lambda q, k, v: attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal)


def grouped_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
    """Attention of ``rows`` query rows over keys stored once per user (rows = users * group, row r
    belonging to user r // group), e.g. the beams of a user over its encoder output.

    q: (rows, H, T, D); k, v: (users, H, S, D); key_mask: (users, S), None = all keys real. The group's queries are
    stacked along time so the per-user keys are never copied per beam.
    """
    rows, heads, time, d_kv = q.shape
    users = k.shape[0]
    group = rows // users
    q = q.view(users, group, heads, time, d_kv).transpose(1, 2).reshape(users, heads, group * time, d_kv)
    out = attention(q, k, v, attn_mask=None if key_mask is None else key_mask[:, None, None, :])
    return out.view(users, heads, group, time, d_kv).transpose(1, 2).reshape(rows, heads, time, d_kv)


def prefix_suffix_attention(
    q: torch.Tensor,
    prefix_k: torch.Tensor,
    prefix_v: torch.Tensor,
    prefix_mask: torch.Tensor,
    suffix_k: torch.Tensor,
    suffix_v: torch.Tensor,
) -> torch.Tensor:
    """One new token per row attending to a per-user prefix (masked) and its own row's suffix (all valid).

    q: (rows, H, 1, D); prefix_k/v: (users, H, P, D); prefix_mask: (users, P); suffix_k/v: (rows, H, t, D).
    One softmax over both parts, so the result equals attention over their concatenation, without
    materialising the prefix once per row.
    """
    rows, heads, _, d_kv = q.shape
    users = prefix_k.shape[0]
    group = rows // users
    scale = 1.0 / math.sqrt(d_kv)
    q_by_user = q.view(users, group, heads, d_kv).transpose(1, 2)  # (users, H, group, D)
    prefix_scores = (q_by_user @ prefix_k.transpose(-1, -2)) * scale  # (users, H, group, P)
    prefix_scores = prefix_scores.masked_fill(~prefix_mask[:, None, None, :], float("-inf"))
    suffix_scores = (q @ suffix_k.transpose(-1, -2)) * scale  # (rows, H, 1, t)
    suffix_scores = suffix_scores.view(users, group, heads, -1).transpose(1, 2)  # (users, H, group, t)
    probs = torch.cat([prefix_scores, suffix_scores], dim=-1).float().softmax(dim=-1).to(q.dtype)
    prefix_probs, suffix_probs = probs.split([prefix_k.shape[2], suffix_k.shape[2]], dim=-1)
    prefix_out = (prefix_probs @ prefix_v).transpose(1, 2).reshape(rows, heads, 1, d_kv)
    suffix_out = suffix_probs.transpose(1, 2).reshape(rows, heads, 1, -1) @ suffix_v
    return prefix_out + suffix_out


def decoding_logits(hidden: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The vocabulary projection of a decoding step, in fp32 even under bf16 autocast: beams are
    ranked by summed log-probabilities, and bf16 logits (8-bit mantissa) reorder near-tied items
    (measured on Beauty: top-10 lists identical to fp32 for 46% of users with a bf16 head, 78% with
    this one). Identical to ``F.linear(hidden, weight)`` in fp32."""
    with torch.autocast(hidden.device.type, enabled=False):
        return F.linear(hidden.float(), weight.float())


def select_user_rows(index: torch.Tensor, num_rows: int, num_users: int) -> torch.Tensor | None:
    """Per-user cache tensors after ``index`` selects rows (row r belongs to user r // (rows / users)).

    Returns None when the selection keeps rows grouped per user with equal group sizes (beam
    expansion with repeat_interleave, reordering beams within a user): per-user tensors stay as
    they are. Otherwise returns the user of each selected row, to index_select them to one per row.
    """
    users_of_selected = index // (num_rows // num_users)
    new_rows = index.numel()
    if new_rows % num_users == 0:
        expected = torch.arange(new_rows, device=index.device) // (new_rows // num_users)
        if torch.equal(users_of_selected, expected):
            return None
    return users_of_selected


class SelfAttention(nn.Module):
    """Multi-head attention with T5-style widths: heads * d_kv need not equal d_model."""

    def __init__(self, d_model: int, num_heads: int, d_kv: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(d_model, 3 * num_heads * d_kv, bias=False)  # one matmul for q, k, v
        self.out = nn.Linear(num_heads * d_kv, d_model, bias=False)

    def forward(self, x: torch.Tensor, attend: AttendFn, packed: Packed | None = None) -> torch.Tensor:
        """x: (B, T, d), or (N, d) real tokens when ``packed``."""
        qkv = self.qkv(x) if packed is None else packed.unpack(self.qkv(x))
        q, k, v = (split_heads(t, self.num_heads) for t in qkv.chunk(3, dim=-1))
        out = merge_heads(attend(q, k, v))
        return self.out(out if packed is None else packed.pack(out))


class CrossAttention(nn.Module):
    def __init__(self, d_model: int, num_heads: int, d_kv: int):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(d_model, num_heads * d_kv, bias=False)
        self.kv = nn.Linear(d_model, 2 * num_heads * d_kv, bias=False)
        self.out = nn.Linear(num_heads * d_kv, d_model, bias=False)

    def keys_values(self, memory: torch.Tensor, packed: Packed | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """memory: (B, S, d), or (N, d) real tokens when ``packed``; returns k, v (B, H, S, D)."""
        kv = self.kv(memory) if packed is None else packed.unpack(self.kv(memory))
        k, v = kv.chunk(2, dim=-1)
        return split_heads(k, self.num_heads), split_heads(v, self.num_heads)

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        q = split_heads(self.q(x), self.num_heads)
        return self.out(merge_heads(grouped_attention(q, k, v, key_mask)))


class MLP(nn.Module):
    """Dense feed-forward. ReLU as in T5: on CPU it is about twice as fast as GELU at this width; in
    place, since the up-projection's output is not needed for its backward (saves a (N, d_ff) buffer)."""

    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.up = nn.Linear(d_model, d_ff, bias=False)
        self.down = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.down(F.relu_(self.up(x))), x.new_zeros(())


class MoEMLP(nn.Module):
    """Mixture of ``num_experts`` dense MLPs with top-k softmax routing, dropless (no capacity limit).

    Gates are the top-k router probabilities, renormalised to sum to 1 when k > 1 (GShard); with
    k = 1 the raw probability is kept so the router still gets a gradient from the main loss
    (Switch). The auxiliary loss is Switch's ``E * sum_e f_e * p_e`` (f_e: share of routed slots
    sent to expert e, p_e: mean router probability of e), 1.0 when perfectly balanced.
    Padding never reaches it (packed batches).
    """

    def __init__(self, d_model: int, d_ff: int, num_experts: int, top_k: int):
        super().__init__()
        if not 1 <= top_k <= num_experts:
            raise ValueError(f"moe_top_k={top_k} must be in [1, num_experts={num_experts}]")
        self.top_k = top_k
        self.router = nn.Linear(d_model, num_experts, bias=False)
        self.experts = nn.ModuleList(MLP(d_model, d_ff) for _ in range(num_experts))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = x.reshape(-1, x.shape[-1])

        probs = self.router(tokens).float().softmax(dim=-1)  # (N, E)
        gates, experts = probs.topk(self.top_k, dim=-1)  # (N, k)
        if self.top_k > 1:
            gates = gates / gates.sum(dim=-1, keepdim=True)

        # Sort the N*k (token, expert) slots by expert so each expert sees one contiguous batch.
        slot_experts = experts.reshape(-1)
        slot_gates = gates.reshape(-1).to(x.dtype)
        slots_by_expert = slot_experts.argsort()
        counts = torch.bincount(slot_experts, minlength=len(self.experts))
        routed = torch.zeros_like(tokens)
        for expert, slots in zip(self.experts, slots_by_expert.split(counts.tolist())):
            if slots.numel() == 0:
                continue
            token_of_slot = slots // self.top_k
            expert_out, _ = expert(tokens[token_of_slot])
            routed.index_add_(0, token_of_slot, expert_out * slot_gates[slots, None])

        slot_share = counts.float() / slot_experts.numel()
        aux_loss = len(self.experts) * (slot_share * probs.mean(dim=0)).sum()

        return routed.view_as(x), aux_loss


def feed_forward(d_model: int, d_ff: int, num_experts: int, top_k: int) -> nn.Module:
    return MoEMLP(d_model, d_ff, num_experts, top_k) if num_experts > 0 else MLP(d_model, d_ff)


class SelfAttentionBlock(nn.Module):
    """Pre-norm self-attention + feed-forward block (encoder layer, or decoder-only layer when causal)."""

    def __init__(
        self, d_model: int, num_heads: int, d_kv: int, d_ff: int, dropout: float, num_experts: int, moe_top_k: int
    ):
        super().__init__()
        self.attn_norm = nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, num_heads, d_kv)
        self.ffn_norm = nn.LayerNorm(d_model)
        self.ffn = feed_forward(d_model, d_ff, num_experts, moe_top_k)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, attend: AttendFn, packed: Packed | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, T, d), or (N, d) real tokens when ``packed``."""
        x = x + self.dropout(self.attn(self.attn_norm(x), attend, packed))
        ffn_out, aux_loss = self.ffn(self.ffn_norm(x))
        return x + self.dropout(ffn_out), aux_loss


def init_weights(model: nn.Module, num_residual_layers: int) -> None:
    """GPT-2 style: N(0, 0.02), with projections into the residual stream scaled down by depth."""
    residual_std = 0.02 / math.sqrt(2 * num_residual_layers)
    for name, param in model.named_parameters():
        if param.dim() < 2:
            continue  # LayerNorm parameters keep their defaults
        is_residual_out = name.endswith("out.weight") or name.endswith("down.weight")
        nn.init.normal_(param, mean=0.0, std=residual_std if is_residual_out else 0.02)
