"""The model registry: ``model.arch`` -> its plug-in (see plugin.py). Adding a model is its folder
and one line here."""

from __future__ import annotations

from torch import nn

from sidrec.config import ModelConfig
from sidrec.errors import ConfigError
from sidrec.models.decoder_only.plugin import PLUGIN as DECODER_ONLY
from sidrec.models.encoder_decoder.plugin import PLUGIN as ENCODER_DECODER
from sidrec.models.item_sid.plugin import PLUGIN as ITEM_SID
from sidrec.models.plugin import ModelPlugin, ModelShape

MODELS: dict[str, ModelPlugin] = {p.name: p for p in (ENCODER_DECODER, DECODER_ONLY, ITEM_SID)}


def get_model(arch: str) -> ModelPlugin:
    if arch not in MODELS:
        raise ConfigError(f"model.arch={arch!r}: expected one of {', '.join(MODELS)}")
    return MODELS[arch]


def build_model(model_cfg: ModelConfig, vocab_size: int, max_source_len: int, target_len: int,
                level_sizes: tuple[int, ...] = (), text_dim: int = 0, num_items: int = 0) -> nn.Module:
    """The network ``model.*`` describes. max_source_len: history tokens incl. a user token if any;
    target_len: SID tokens per item; level_sizes, text_dim, num_items: what item-level models read."""
    shape = ModelShape(vocab_size, max_source_len, target_len, tuple(level_sizes), text_dim, num_items)
    return get_model(model_cfg.arch).build(model_cfg, shape)
