"""Training objectives shared by the SID generators (encoder_decoder, decoder_only): a cross-entropy
over the next item's SID tokens, given the history's tokens (``ranker.batcher`` turns items into
tokens), plus ``model.moe_aux_weight`` x the mixture-of-experts load-balancing loss. Signature: see
``plugin.Objective``; ``model_cfg``: ``sid_generator.SIDGeneratorOptions``."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sidrec.tokenize.vocab import PAD


def _token_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=PAD,
                           label_smoothing=label_smoothing)


def _with_moe_term(ce: torch.Tensor, aux_loss: torch.Tensor, model_cfg):
    """aux_loss: the load-balancing loss averaged over MoE layers (0 for dense models), logged when there are experts."""
    logged = {"loss": ce, **({"moe_aux_loss": aux_loss} if model_cfg.num_experts > 0 else {})}
    return ce + model_cfg.moe_aux_weight * aux_loss, logged


def next_item_loss(model, batch: dict, ranker, model_cfg, label_smoothing: float):
    """(history -> next item) samples: the decoder generates the target's SID after BOS."""
    input_ids, mask = ranker.batcher.inputs(batch["histories"], batch["users"])
    decoder_input_ids, labels = ranker.batcher.targets(batch["targets"])
    logits, aux_loss = model(input_ids, mask, decoder_input_ids)
    return _with_moe_term(_token_cross_entropy(logits, labels, label_smoothing), aux_loss, model_cfg)


def all_positions_loss(model, batch: dict, ranker, model_cfg, label_smoothing: float):
    """The window (history + target item) is one causal token sequence; every item but the first is a target."""
    window = torch.cat([batch["histories"], batch["targets"][:, None]], dim=1)
    tokens, mask, labels = ranker.batcher.sequence(window, batch["users"])
    logits, aux_loss = model.sequence_logits(tokens, mask)
    return _with_moe_term(_token_cross_entropy(logits, labels, label_smoothing), aux_loss, model_cfg)
