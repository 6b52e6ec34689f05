"""The model registry: ``model.arch`` -> its plug-in (see plugin.py), whose options class is the
``model`` section of a run's config (``sidrec.config.model_options``). Adding a model is its folder
and one line here."""

from __future__ import annotations

import torch
from torch import nn

from sidrec.config import ModelConfig
from sidrec.errors import ConfigError
from sidrec.models.decoder_only.plugin import PLUGIN as DECODER_ONLY
from sidrec.models.encoder_decoder.plugin import PLUGIN as ENCODER_DECODER
from sidrec.models.item_sid.plugin import PLUGIN as ITEM_SID
from sidrec.models.plugin import ModelPlugin, ModelShape
from sidrec.tokenize.vocab import SIDVocab

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
    plugin = get_model(model_cfg.arch)
    if not isinstance(model_cfg, plugin.options):
        raise ConfigError(f"model.arch={model_cfg.arch}: expected its options ({plugin.options.__name__}, e.g. "
                          f"sidrec.config.model_config({model_cfg.arch!r}, ...)), got {type(model_cfg).__name__}")
    return plugin.build(model_cfg, shape)


def check_model(model_cfg: ModelConfig, num_levels: int = 3, num_codes: int = 256) -> None:
    """``model.*`` checked before any work starts: the plug-in builds its network for a stand-in
    catalog of the run's SID shape (``num_levels`` levels of ``num_codes`` and a de-dup digit), on
    the meta device (no memory, no time), so a setting it cannot honour fails at once."""
    vocab = SIDVocab((num_codes,) * num_levels + (2,), model_cfg.user_tokens())
    source_len = model_cfg.max_history * vocab.num_levels + (1 if vocab.num_user_tokens else 0)
    try:
        with torch.device("meta"):
            build_model(model_cfg, vocab.size, source_len, vocab.num_levels, level_sizes=vocab.level_sizes,
                        text_dim=8, num_items=2)
    except (ValueError, RuntimeError, TypeError, ZeroDivisionError) as exc:  # torch's own refusals
        raise ConfigError(f"model.arch={model_cfg.arch}: the network cannot be built with these model.* "
                          f"settings ({' '.join(str(exc).split())})") from None
