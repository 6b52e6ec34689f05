"""``model.arch=encoder_decoder``: the encoder reads the history's SID tokens, the decoder generates
the next item's SID; trained on (history -> next item) samples, ranked by beam search."""

from __future__ import annotations

from dataclasses import dataclass

from sidrec.errors import ConfigError
from sidrec.models.encoder_decoder.network import EncoderDecoder
from sidrec.models.objectives import next_item_loss
from sidrec.models.plugin import ModelPlugin, ModelShape
from sidrec.models.sid_generator import SIDGeneratorOptions, transformer_config


@dataclass
class EncoderDecoderOptions(SIDGeneratorOptions):
    """model.* of the encoder-decoder: the SID generators' options (sidrec/models/sid_generator.py)."""

    arch: str = "encoder_decoder"


def build(model_cfg: EncoderDecoderOptions, shape: ModelShape) -> EncoderDecoder:
    cfg = transformer_config(model_cfg, shape)
    if model_cfg.objective == "all_positions":
        raise ConfigError("model.objective=all_positions needs model.arch=decoder_only")
    return EncoderDecoder(cfg)


PLUGIN = ModelPlugin("encoder_decoder", EncoderDecoderOptions, build, next_item_loss)
