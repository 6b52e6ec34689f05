"""What a model plug-in declares. A model is one folder under ``sidrec/models/<name>/``:

    network.py   the nn.Module and its dataclass config; plain PyTorch, imports only torch (and layers.py)
    plugin.py    ``PLUGIN = ModelPlugin(...)``: how ``model.*`` builds the network, its training
                 objective, and which training samples that objective reads
    __init__.py  re-exports the network

and one line in ``sidrec/models/registry.py``. Ranking follows from the network: one with
``ranks_catalog = True`` scores every item (``user_states`` + ``scores``) and the Ranker takes an exact
top-k; any other is a SID generator (``prefill`` / ``decode_step`` / ``reorder_cache``) ranked by
beam search over the SID trie. Both need no code outside the folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from sidrec.config import ModelConfig
from sidrec.errors import ConfigError
from sidrec.models.layers import TransformerConfig
from sidrec.tokenize.vocab import BOS


@dataclass(frozen=True)
class ModelShape:
    """What a run knows of its catalog when it builds a model (stored in model.pt's meta)."""

    vocab_size: int  # SID tokens + specials + user tokens (sidrec.tokenize.vocab)
    max_source_len: int  # history tokens, a user token included
    target_len: int  # SID tokens per item
    level_sizes: tuple[int, ...] = ()  # values per SID level
    text_dim: int = 0  # width of the item text embeddings
    num_items: int = 0  # items the model is trained on (item-level models with per-item embeddings)


# loss(model, batch, ranker, model_cfg, label_smoothing) -> (the loss to minimise, {name: value to log
# as train/<name>}, "loss" the next-item cross-entropy). ``batch`` holds "histories" (B, H) item
# indices (-1 = left padding), "targets" (B,), "users" (B,); the ranker holds the catalog as models
# read it (``ranker.batcher`` SID tokens, ``ranker.features`` SIDs + text); ``model_cfg`` is ``model.*``.
Objective = Callable[[nn.Module, dict, object, ModelConfig, float], "tuple[torch.Tensor, dict[str, torch.Tensor]]"]


@dataclass(frozen=True)
class ModelPlugin:
    name: str  # the model.arch value
    build: Callable[[ModelConfig, ModelShape], nn.Module]  # raises ConfigError on settings it cannot honour
    loss: Objective
    # True: the objective reads all-positions windows (``sidrec.data.split.training_windows``, each
    # window one causal sequence whose every item but the first is a target); False: sliding-window
    # (history -> next item) samples.
    trains_on_windows: Callable[[ModelConfig], bool] = lambda model_cfg: False


def transformer_config(model_cfg: ModelConfig, shape: ModelShape) -> TransformerConfig:
    """The SID generators' network from ``model.*`` (shared by encoder_decoder and decoder_only)."""
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
