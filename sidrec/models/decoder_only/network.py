"""Decoder-only transformer over SID tokens: one causal stack reads [history, BOS, target], or with
``bos_separator=False`` the plain SID sequence [history, target] (trained on every position at once).

Same widths as the encoder-decoder and 2 * num_layers layers, so the two differ by the decoder's
cross-attention only (the comparison in GRID section 4.2). Histories may be padded on either side:
positions are counted over non-padding tokens and padding keys are masked, so a padded row gives
the same logits as the unpadded row alone. Output head tied to the token embedding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from sidrec.models.layers import (
    SelfAttentionBlock,
    TransformerConfig,
    attention,
    decoding_logits,
    init_weights,
    pack_if_padded,
    prefix_suffix_attention,
    select_user_rows,
)


@dataclass
class DecoderOnlyCache:
    """Decoding state. Rows are beams; the K/V of history + BOS (the prefix) are stored once per user
    (row r belongs to user r // (rows / users)) as long as reorders keep the beams of a user together."""

    prefix_k: torch.Tensor  # (layers, users, H, source_len [+ 1 for BOS], D)
    prefix_v: torch.Tensor
    prefix_mask: torch.Tensor  # (users, source_len [+ 1])
    next_position: torch.Tensor  # (users,) position id of the first generated token
    suffix_k: torch.Tensor  # (layers, rows, H, max_target_len - 1, D): generated tokens
    suffix_v: torch.Tensor
    length: int  # generated tokens cached so far

    def reorder(self, index: torch.Tensor) -> "DecoderOnlyCache":
        user_index = select_user_rows(index, self.suffix_k.shape[1], self.prefix_k.shape[1])
        prefix_k, prefix_v = self.prefix_k, self.prefix_v
        prefix_mask, next_position = self.prefix_mask, self.next_position
        if user_index is not None:
            prefix_k, prefix_v = prefix_k.index_select(1, user_index), prefix_v.index_select(1, user_index)
            prefix_mask = prefix_mask.index_select(0, user_index)
            next_position = next_position.index_select(0, user_index)
        suffix_k, suffix_v = self.suffix_k.index_select(1, index), self.suffix_v.index_select(1, index)
        return DecoderOnlyCache(prefix_k, prefix_v, prefix_mask, next_position, suffix_k, suffix_v, self.length)


class DecoderOnly(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.token_embedding = nn.Embedding(cfg.vocab_size, d)
        self.positions = nn.Embedding(cfg.max_source_len + cfg.max_target_len, d)
        self.dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            SelfAttentionBlock(d, cfg.num_heads, cfg.d_kv, cfg.d_ff, cfg.dropout, cfg.num_experts, cfg.moe_top_k)
            for _ in range(cfg.num_layers)
        )
        self.norm = nn.LayerNorm(d)
        init_weights(self, cfg.num_layers)

    def _run(
        self, tokens: torch.Tensor, mask: torch.Tensor, kv_sink: list | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Causal pass over padded sequences; returns the final hidden states (B, S, d) before the norm
        and the summed aux loss. Appends each layer's (k, v) to ``kv_sink`` when given."""
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        packed = pack_if_padded(mask)
        if packed is not None:
            tokens, positions = packed.pack(tokens), packed.pack(positions)
        x = self.dropout(self.token_embedding(tokens) + self.positions(positions))
        if packed is None:  # no padding (e.g. length-bucketed batches): the fused causal kernel, no mask tensor
            attn_mask, is_causal = None, True
        else:
            length = mask.shape[1]
            causal = torch.ones(length, length, dtype=torch.bool, device=mask.device).tril()
            diagonal = torch.eye(length, dtype=torch.bool, device=mask.device)
            # Every token also sees itself, so leading padding rows are not all -inf (NaN in softmax).
            attn_mask, is_causal = ((causal & mask[:, None, :]) | diagonal)[:, None], False  # (B, 1, S, S)

        def attend(q, k, v):
            if kv_sink is not None:
                kv_sink.append((k, v))
            return attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal)

        aux_losses = []
        for block in self.blocks:
            x, aux_loss = block(x, attend, packed)
            aux_losses.append(aux_loss)
        return (x if packed is None else packed.unpack(x)), torch.stack(aux_losses).sum()

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(self.norm(hidden), self.token_embedding.weight)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, decoder_input_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing: logits (B, T, V) where logits[:, j] predicts the token after
        decoder_input_ids[:, j]; aux_loss is the MoE load-balancing loss averaged over layers (0 if dense)."""
        tokens = torch.cat([input_ids, decoder_input_ids], dim=1)
        mask = torch.cat([attention_mask, torch.ones_like(decoder_input_ids, dtype=torch.bool)], dim=1)
        hidden, aux_loss = self._run(tokens, mask)
        logits = self._logits(hidden[:, -decoder_input_ids.shape[1] :])
        return logits, aux_loss / self.cfg.num_layers

    def sequence_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """All-positions training: logits (B, S, V) where logits[:, j] predicts the token after
        input_ids[:, j], and the averaged aux loss."""
        hidden, aux_loss = self._run(input_ids, attention_mask)
        return self._logits(hidden), aux_loss / self.cfg.num_layers

    @torch.no_grad()
    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, DecoderOnlyCache]:
        """Run history (+ BOS) once and cache its K/V per user: logits (B, V) for the first SID token."""
        cfg, rows = self.cfg, input_ids.shape[0]
        tokens, mask = input_ids, attention_mask
        if cfg.bos_separator:
            bos = torch.full((rows, 1), cfg.bos_token_id, dtype=torch.long, device=input_ids.device)
            tokens = torch.cat([input_ids, bos], dim=1)
            mask = torch.cat([attention_mask, torch.ones_like(bos, dtype=torch.bool)], dim=1)
        kv: list[tuple[torch.Tensor, torch.Tensor]] = []
        hidden, _ = self._run(tokens, mask, kv_sink=kv)
        # The last real token predicts the first SID token (histories may be padded on either side).
        last = mask.shape[1] - 1 - mask.flip(1).int().argmax(dim=1)
        prefix_k = torch.stack([k for k, _ in kv])
        prefix_v = torch.stack([v for _, v in kv])
        suffix_shape = (cfg.num_layers, rows, cfg.num_heads, cfg.max_target_len - 1, cfg.d_kv)  # preallocated
        cache = DecoderOnlyCache(
            prefix_k=prefix_k,
            prefix_v=prefix_v,
            prefix_mask=mask,
            next_position=mask.sum(dim=1),
            suffix_k=prefix_k.new_zeros(suffix_shape),
            suffix_v=prefix_v.new_zeros(suffix_shape),
            length=0,
        )
        return decoding_logits(self.norm(hidden[torch.arange(rows, device=hidden.device), last]),
                               self.token_embedding.weight), cache

    @torch.no_grad()
    def decode_step(self, tokens: torch.Tensor, cache: DecoderOnlyCache) -> tuple[torch.Tensor, DecoderOnlyCache]:
        """Append one token per row; returns logits (rows, V) for the next token. Updates ``cache`` in place."""
        step = cache.length
        if step >= cache.suffix_k.shape[3]:
            raise ValueError(f"decoder cache is full ({cache.suffix_k.shape[3]} generated tokens)")
        rows_per_user = tokens.shape[0] // cache.prefix_k.shape[1]
        position = cache.next_position.repeat_interleave(rows_per_user) + step
        x = (self.token_embedding(tokens) + self.positions(position))[:, None, :]  # (rows, 1, d)
        for layer, block in enumerate(self.blocks):

            def attend_cached(q, k, v, layer=layer):
                cache.suffix_k[layer, :, :, step] = k[:, :, 0]
                cache.suffix_v[layer, :, :, step] = v[:, :, 0]
                return prefix_suffix_attention(
                    q,
                    cache.prefix_k[layer],
                    cache.prefix_v[layer],
                    cache.prefix_mask,
                    cache.suffix_k[layer, :, :, : step + 1],
                    cache.suffix_v[layer, :, :, : step + 1],
                )

            x, _ = block(x, attend_cached)
        cache.length = step + 1
        return decoding_logits(self.norm(x[:, 0]), self.token_embedding.weight), cache

    def reorder_cache(self, cache: DecoderOnlyCache, index: torch.Tensor) -> DecoderOnlyCache:
        """Select rows (beams) of the cache: expansion to beams and per-step beam reordering."""
        return cache.reorder(index)
