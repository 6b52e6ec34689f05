"""Generative models over SID tokens, one file per architecture, behind one interface:

    forward(input_ids (B,S), attention_mask (B,S) bool, decoder_input_ids (B,T)) -> (logits (B,T,V), aux_loss)
    prefill(input_ids, attention_mask) -> (logits (B,V), cache)
    decode_step(tokens (rows,), cache) -> (logits (rows,V), cache)
    reorder_cache(cache, index (rows',)) -> cache

aux_loss is the load-balancing loss averaged over MoE layers (1.0 when balanced, 0 for dense
models), unweighted: train on ``cross_entropy + moe_aux_weight * aux_loss``.

Beside them, sasrec.py: the SASRec baseline over item ids (``sidrec sasrec``), with its own
interface (loss, score_last).
"""

from __future__ import annotations

from dataclasses import replace

import torch.nn as nn

from sidrec.config import ModelConfig
from sidrec.errors import ConfigError
from sidrec.models.decoder_only import DecoderOnly, DecoderOnlyCache
from sidrec.models.encoder_decoder import EncoderDecoder, EncoderDecoderCache
from sidrec.models.layers import TransformerConfig
from sidrec.tokenize.vocab import BOS

__all__ = [
    "DecoderOnly",
    "DecoderOnlyCache",
    "EncoderDecoder",
    "EncoderDecoderCache",
    "TransformerConfig",
    "build_model",
]


def build_model(model_cfg: ModelConfig, vocab_size: int, max_source_len: int, target_len: int) -> nn.Module:
    """max_source_len: history tokens incl. a user token if any; target_len: SID tokens per item."""
    cfg = TransformerConfig(
        vocab_size=vocab_size,
        num_layers=model_cfg.num_layers,
        num_heads=model_cfg.num_heads,
        d_model=model_cfg.d_model,
        d_kv=model_cfg.d_kv,
        d_ff=model_cfg.d_ff,
        dropout=model_cfg.dropout,
        num_experts=model_cfg.num_experts,
        moe_top_k=model_cfg.moe_top_k,
        max_source_len=max_source_len,
        max_target_len=target_len,
        bos_token_id=BOS,
        positions_from_end=model_cfg.positions == "from_end",
        bos_separator=model_cfg.objective == "next_item",
    )
    if model_cfg.positions not in ("from_start", "from_end"):
        raise ConfigError(f"model.positions={model_cfg.positions!r}: expected from_start or from_end")
    if model_cfg.objective not in ("next_item", "all_positions"):
        raise ConfigError(f"model.objective={model_cfg.objective!r}: expected next_item or all_positions")
    if model_cfg.arch == "encoder_decoder":
        if model_cfg.objective == "all_positions":
            raise ConfigError("model.objective=all_positions needs model.arch=decoder_only")
        return EncoderDecoder(cfg)
    if model_cfg.arch == "decoder_only":
        if model_cfg.positions == "from_end":
            raise ConfigError("model.positions=from_end is for encoder_decoder (a causal pass has no fixed end)")
        # Same layer budget: the encoder-decoder's two stacks become one causal stack.
        return DecoderOnly(replace(cfg, num_layers=2 * model_cfg.num_layers))
    raise ConfigError(f"model.arch={model_cfg.arch!r}: expected encoder_decoder or decoder_only")
