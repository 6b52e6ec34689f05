"""``model.arch=decoder_only``: one causal stack over the history's SID tokens then the next item's;
trained on (history -> next item) samples, or on all-positions windows (``model.objective=all_positions``),
ranked by beam search."""

from __future__ import annotations

from dataclasses import dataclass, replace

from sidrec.errors import ConfigError
from sidrec.models.decoder_only.network import DecoderOnly
from sidrec.models.objectives import all_positions_loss, next_item_loss
from sidrec.models.plugin import ModelPlugin, ModelShape
from sidrec.models.sid_generator import SIDGeneratorOptions, transformer_config


@dataclass
class DecoderOnlyOptions(SIDGeneratorOptions):
    """model.* of the decoder-only model: the SID generators' options (sidrec/models/sid_generator.py)."""

    arch: str = "decoder_only"


def build(model_cfg: DecoderOnlyOptions, shape: ModelShape) -> DecoderOnly:
    cfg = transformer_config(model_cfg, shape)
    if model_cfg.positions == "from_end":
        raise ConfigError("model.positions=from_end is for encoder_decoder (a causal pass has no fixed end)")
    # Same layer budget: the encoder-decoder's two stacks become one causal stack.
    return DecoderOnly(replace(cfg, num_layers=2 * model_cfg.num_layers))


def loss(model, batch, ranker, model_cfg, label_smoothing):
    objective = next_item_loss if model.cfg.bos_separator else all_positions_loss  # set by model.objective
    return objective(model, batch, ranker, model_cfg, label_smoothing)


PLUGIN = ModelPlugin("decoder_only", DecoderOnlyOptions, build, loss,
                     trains_on_windows=lambda model_cfg: model_cfg.objective == "all_positions")
