"""``model.arch=encoder_decoder``: the encoder reads the history's SID tokens, the decoder generates
the next item's SID; trained on (history -> next item) samples, ranked by beam search."""

from __future__ import annotations

from sidrec.config import ModelConfig
from sidrec.errors import ConfigError
from sidrec.models.encoder_decoder.network import EncoderDecoder
from sidrec.models.objectives import next_item_loss
from sidrec.models.plugin import ModelPlugin, ModelShape, transformer_config


def build(model_cfg: ModelConfig, shape: ModelShape) -> EncoderDecoder:
    cfg = transformer_config(model_cfg, shape)
    if model_cfg.objective == "all_positions":
        raise ConfigError("model.objective=all_positions needs model.arch=decoder_only")
    return EncoderDecoder(cfg)


PLUGIN = ModelPlugin("encoder_decoder", build, next_item_loss)
