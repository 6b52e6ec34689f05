"""Encoder-decoder transformer over SID tokens (the GRID / TIGER default).

The encoder reads the user's history tokens (bidirectional, padding masked); the decoder generates
the next item's SID tokens with causal self-attention and cross-attention to the encoder output.

Choices: pre-norm LayerNorm blocks; learned absolute positions, counted over non-padding tokens only
(from the oldest or, optionally, from the most recent token) so left- and right-padded rows see the
same positions; one token embedding shared by encoder input,
decoder input and the output head (tied: the SID token set is the same on both sides, and it saves
vocab * d_model parameters).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from sidrec.models.layers import (
    AttendFn,
    CrossAttention,
    Packed,
    SelfAttention,
    SelfAttentionBlock,
    TransformerConfig,
    attention,
    decoding_logits,
    feed_forward,
    init_weights,
    pack_if_padded,
    sdpa_attend,
    select_user_rows,
)


@dataclass
class EncoderDecoderCache:
    """Decoding state. Rows are beams; cross-attention K/V are stored once per user (row r belongs
    to user r // (rows / users)) as long as reorders keep the beams of a user together."""

    self_k: torch.Tensor  # (layers, rows, H, max_target_len, D)
    self_v: torch.Tensor
    length: int  # decoder tokens cached so far
    cross_k: torch.Tensor  # (layers, users, H, source_len, D)
    cross_v: torch.Tensor
    source_mask: torch.Tensor  # (users, source_len)

    def reorder(self, index: torch.Tensor) -> "EncoderDecoderCache":
        user_index = select_user_rows(index, self.self_k.shape[1], self.cross_k.shape[1])
        cross_k, cross_v, source_mask = self.cross_k, self.cross_v, self.source_mask
        if user_index is not None:
            cross_k, cross_v = cross_k.index_select(1, user_index), cross_v.index_select(1, user_index)
            source_mask = source_mask.index_select(0, user_index)
        self_k, self_v = self.self_k.index_select(1, index), self.self_v.index_select(1, index)
        return EncoderDecoderCache(self_k, self_v, self.length, cross_k, cross_v, source_mask)


class DecoderBlock(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        d = cfg.d_model
        self.self_attn_norm = nn.LayerNorm(d)
        self.self_attn = SelfAttention(d, cfg.num_heads, cfg.d_kv)
        self.cross_attn_norm = nn.LayerNorm(d)
        self.cross_attn = CrossAttention(d, cfg.num_heads, cfg.d_kv)
        self.ffn_norm = nn.LayerNorm(d)
        self.ffn = feed_forward(d, cfg.d_ff, cfg.num_experts, cfg.moe_top_k)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(
        self, x: torch.Tensor, attend: AttendFn, cross_k: torch.Tensor, cross_v: torch.Tensor,
        source_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = x + self.dropout(self.self_attn(self.self_attn_norm(x), attend))
        x = x + self.dropout(self.cross_attn(self.cross_attn_norm(x), cross_k, cross_v, source_mask))
        ffn_out, aux_loss = self.ffn(self.ffn_norm(x))
        return x + self.dropout(ffn_out), aux_loss


class EncoderDecoder(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.token_embedding = nn.Embedding(cfg.vocab_size, d)
        self.source_positions = nn.Embedding(cfg.max_source_len, d)
        self.target_positions = nn.Embedding(cfg.max_target_len, d)
        self.dropout = nn.Dropout(cfg.dropout)
        self.encoder_blocks = nn.ModuleList(
            SelfAttentionBlock(d, cfg.num_heads, cfg.d_kv, cfg.d_ff, cfg.dropout, cfg.num_experts, cfg.moe_top_k)
            for _ in range(cfg.num_layers)
        )
        self.encoder_norm = nn.LayerNorm(d)
        self.decoder_blocks = nn.ModuleList(DecoderBlock(cfg) for _ in range(cfg.num_layers))
        self.decoder_norm = nn.LayerNorm(d)
        init_weights(self, 2 * cfg.num_layers)

    def encode(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, Packed | None, torch.Tensor]:
        """Encoder output, (N, d) real tokens when ``packed`` else (B, S, d); its packing; summed aux loss."""
        counted = attention_mask.cumsum(dim=1)
        if self.cfg.positions_from_end:
            counted = counted[:, -1:] - counted + 1  # the last real token gets 1 (after - 1: position 0)
        positions = (counted - 1).clamp(0, self.cfg.max_source_len - 1)
        packed = pack_if_padded(attention_mask)
        if packed is not None:
            input_ids, positions = packed.pack(input_ids), packed.pack(positions)
        x = self.dropout(self.token_embedding(input_ids) + self.source_positions(positions))
        # A (B, 1, 1, S) key mask: padding queries still see the real keys, so no row is all -inf.
        attend = sdpa_attend(attn_mask=None if packed is None else attention_mask[:, None, None, :])
        aux_losses = []
        for block in self.encoder_blocks:
            x, aux_loss = block(x, attend, packed)
            aux_losses.append(aux_loss)
        return self.encoder_norm(x), packed, torch.stack(aux_losses).sum()

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, decoder_input_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing: logits (B, T, V) where logits[:, j] predicts the token after
        decoder_input_ids[:, j]; aux_loss is the MoE load-balancing loss averaged over layers (0 if dense)."""
        memory, packed, aux_loss = self.encode(input_ids, attention_mask)
        positions = torch.arange(decoder_input_ids.shape[1], device=decoder_input_ids.device)
        x = self.dropout(self.token_embedding(decoder_input_ids) + self.target_positions(positions))
        attend = sdpa_attend(is_causal=True)
        source_mask = None if packed is None else attention_mask
        for block in self.decoder_blocks:
            cross_k, cross_v = block.cross_attn.keys_values(memory, packed)
            x, block_aux_loss = block(x, attend, cross_k, cross_v, source_mask)
            aux_loss = aux_loss + block_aux_loss
        logits = F.linear(self.decoder_norm(x), self.token_embedding.weight)
        return logits, aux_loss / (2 * self.cfg.num_layers)

    @torch.no_grad()
    def prefill(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, EncoderDecoderCache]:
        """Encode once, cache cross-attention K/V per user, and decode BOS: logits (B, V) for the
        first SID token."""
        memory, packed, _ = self.encode(input_ids, attention_mask)
        cross = [block.cross_attn.keys_values(memory, packed) for block in self.decoder_blocks]
        cross_k = torch.stack([k for k, _ in cross])
        cross_v = torch.stack([v for _, v in cross])
        cfg, rows = self.cfg, input_ids.shape[0]
        self_shape = (cfg.num_layers, rows, cfg.num_heads, cfg.max_target_len, cfg.d_kv)  # preallocated
        cache = EncoderDecoderCache(
            self_k=cross_k.new_zeros(self_shape),
            self_v=cross_v.new_zeros(self_shape),
            length=0,
            cross_k=cross_k,
            cross_v=cross_v,
            source_mask=attention_mask,
        )
        bos = torch.full((rows,), cfg.bos_token_id, dtype=torch.long, device=input_ids.device)
        return self.decode_step(bos, cache)

    @torch.no_grad()
    def decode_step(self, tokens: torch.Tensor, cache: EncoderDecoderCache) -> tuple[torch.Tensor, EncoderDecoderCache]:
        """Append one token per row; returns logits (rows, V) for the next token. Updates ``cache`` in place."""
        step = cache.length
        if step >= self.cfg.max_target_len:
            raise ValueError(f"decoder cache is full ({self.cfg.max_target_len} tokens)")
        position = torch.full_like(tokens, step)
        x = (self.token_embedding(tokens) + self.target_positions(position))[:, None, :]  # (rows, 1, d)
        for layer, block in enumerate(self.decoder_blocks):

            def attend_cached(q, k, v, layer=layer):
                cache.self_k[layer, :, :, step] = k[:, :, 0]
                cache.self_v[layer, :, :, step] = v[:, :, 0]
                keys, values = cache.self_k[layer, :, :, : step + 1], cache.self_v[layer, :, :, : step + 1]
                return attention(q, keys, values)

            x, _ = block(x, attend_cached, cache.cross_k[layer], cache.cross_v[layer], cache.source_mask)
        cache.length = step + 1
        logits = decoding_logits(self.decoder_norm(x[:, 0]), self.token_embedding.weight)
        return logits, cache

    def reorder_cache(self, cache: EncoderDecoderCache, index: torch.Tensor) -> EncoderDecoderCache:
        """Select rows (beams) of the cache: expansion to beams and per-step beam reordering."""
        return cache.reorder(index)
