"""Recommendation models, one plug-in folder each (see plugin.py), registered in registry.py:

    encoder_decoder/, decoder_only/   SID generators: ranked by beam search over the SID trie
        forward(input_ids (B,S), attention_mask (B,S) bool, decoder_input_ids (B,T)) -> (logits (B,T,V), aux_loss)
        prefill(input_ids, attention_mask) -> (logits (B,V), cache)
        decode_step(tokens (rows,), cache) -> (logits (rows,V), cache)
        reorder_cache(cache, index (rows',)) -> cache
    item_sid/                         item-level: scores every catalog item exactly (ranks_catalog = True)
        user_states(histories (B,H), catalog) -> (B,d);  scores(states, catalog, last_items) -> (B,N)

aux_loss is the load-balancing loss averaged over MoE layers (1.0 when balanced, 0 for dense
models), unweighted: train on ``cross_entropy + moe_aux_weight * aux_loss``.

Beside them, sasrec.py: the SASRec baseline over item ids (``sidrec sasrec``), with its own
interface (loss, score_last) and training loop.
"""

from __future__ import annotations

from sidrec.models.decoder_only import DecoderOnly, DecoderOnlyCache
from sidrec.models.encoder_decoder import EncoderDecoder, EncoderDecoderCache
from sidrec.models.item_sid import ItemSID
from sidrec.models.layers import TransformerConfig
from sidrec.models.registry import MODELS, build_model, get_model

__all__ = [
    "DecoderOnly",
    "DecoderOnlyCache",
    "EncoderDecoder",
    "EncoderDecoderCache",
    "ItemSID",
    "MODELS",
    "TransformerConfig",
    "build_model",
    "get_model",
]
