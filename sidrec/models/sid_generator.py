"""What the two SID generator plug-ins (``encoder_decoder``, ``decoder_only``) share: their options,
the ``model.*`` keys beyond ``ModelConfig``'s (each plug-in's own options class extends this one),
and the one network config both are built from (``sidrec.models.layers.TransformerConfig``). Their
training objectives are in ``objectives.py``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from sidrec.config import ModelConfig, at_least
from sidrec.errors import ConfigError
from sidrec.models.layers import TransformerConfig
from sidrec.models.plugin import ModelShape
from sidrec.tokenize.vocab import BOS


@dataclass
class SIDGeneratorOptions(ModelConfig):
    d_kv: int = 64  # per-head dimension (T5 style: 6 heads need not divide d_model)
    num_experts: int = 0  # 0 = dense MLP; >0 = mixture-of-experts MLP
    moe_top_k: int = 2
    moe_aux_weight: float = 0.01  # load-balancing loss weight
    num_user_tokens: int = 0  # TIGER user tokens (hashed user id), 0 = off
    # Position ids of the history tokens: from_start (oldest real token is 0) | from_end (the most
    # recent token is 0, so it keeps its embedding whatever the history length; encoder_decoder only).
    positions: str = "from_start"
    # next_item: each sample is (history -> next item). all_positions (decoder_only): one causal pass
    # over a user's SID sequence predicts the next item at every position, no BOS separator; same
    # targets as sliding windows for far fewer tokens (SASRec-style training).
    objective: str = "next_item"

    LIMITS: ClassVar[dict[str, tuple]] = {
        **{name: at_least(1) for name in ("d_kv", "moe_top_k")},
        **{name: at_least(0) for name in ("num_experts", "moe_aux_weight", "num_user_tokens")},
    }

    def user_tokens(self) -> int:
        return self.num_user_tokens


def transformer_config(model_cfg: SIDGeneratorOptions, shape: ModelShape) -> TransformerConfig:
    """The SID generators' network from ``model.*``."""
    if model_cfg.positions not in ("from_start", "from_end"):
        raise ConfigError(f"model.positions={model_cfg.positions!r}: expected from_start or from_end")
    if model_cfg.objective not in ("next_item", "all_positions"):
        raise ConfigError(f"model.objective={model_cfg.objective!r}: expected next_item or all_positions")
    return TransformerConfig(
        vocab_size=shape.vocab_size,
        num_layers=model_cfg.num_layers,
        num_heads=model_cfg.num_heads,
        d_model=model_cfg.d_model,
        d_kv=model_cfg.d_kv,
        d_ff=model_cfg.d_ff,
        dropout=model_cfg.dropout,
        num_experts=model_cfg.num_experts,
        moe_top_k=model_cfg.moe_top_k,
        max_source_len=shape.max_source_len,
        max_target_len=shape.target_len,
        bos_token_id=BOS,
        positions_from_end=model_cfg.positions == "from_end",
        bos_separator=model_cfg.objective == "next_item",
    )
