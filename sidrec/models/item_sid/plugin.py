"""``model.arch=item_sid``: one position per history item, built from its SID codes (and text);
trained at every position of all-positions windows; ranks the whole catalog exactly."""

from __future__ import annotations

import torch

from sidrec.config import ModelConfig
from sidrec.errors import ConfigError
from sidrec.models.item_sid.network import HEADS, ItemSID, ItemSIDConfig
from sidrec.models.plugin import ModelPlugin, ModelShape

ITEM_INPUTS = ("codes", "text", "id")  # model.item_inputs: a comma-separated set of these


def build(model_cfg: ModelConfig, shape: ModelShape) -> ItemSID:
    if model_cfg.head not in HEADS:
        raise ConfigError(f"model.head={model_cfg.head!r}: expected one of {', '.join(HEADS)}")
    inputs = {part.strip() for part in model_cfg.item_inputs.split(",") if part.strip()}
    if not inputs or not inputs <= set(ITEM_INPUTS):
        raise ConfigError(f"model.item_inputs={model_cfg.item_inputs!r}: expected a comma-separated set of "
                          f"{', '.join(ITEM_INPUTS)} (e.g. codes,text)")
    if model_cfg.num_user_tokens:
        raise ConfigError("model.num_user_tokens: user tokens are for the SID generators, not model.arch=item_sid")
    if model_cfg.head == "levels" and "codes" not in inputs:
        raise ConfigError("model.head=levels predicts SID codes: model.item_inputs must include codes")
    if model_cfg.d_model % model_cfg.num_heads:
        raise ConfigError(f"model.d_model={model_cfg.d_model} must be divisible by model.num_heads="
                          f"{model_cfg.num_heads} for model.arch=item_sid")
    uses_text = "text" in inputs or model_cfg.text_sim
    if uses_text and not shape.text_dim:
        raise ConfigError("model.item_inputs / model.text_sim use item text, but the run has no text embeddings")
    return ItemSID(ItemSIDConfig(
        level_sizes=shape.level_sizes, text_dim=shape.text_dim if uses_text else 0,
        use_codes="codes" in inputs, text_input="text" in inputs,
        num_id_items=shape.num_items if "id" in inputs else 0,
        head=model_cfg.head, text_sim=model_cfg.text_sim, max_history=model_cfg.max_history,
        d_model=model_cfg.d_model, num_layers=model_cfg.num_layers, num_heads=model_cfg.num_heads,
        d_ff=model_cfg.d_ff, dropout=model_cfg.dropout))


def loss(model: ItemSID, batch: dict, ranker, model_cfg: ModelConfig, label_smoothing: float):
    """A softmax over the catalog (or per SID level) at every position of the window."""
    window = torch.cat([batch["histories"], batch["targets"][:, None]], dim=1)
    ce = model.loss(window, ranker.features, label_smoothing)
    return ce, {"loss": ce}


PLUGIN = ModelPlugin("item_sid", build, loss, trains_on_windows=lambda model_cfg: True)
