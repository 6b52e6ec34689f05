"""``model.arch=item_sid``: one position per history item, built from its SID codes (and text);
trained at every position of all-positions windows; ranks the whole catalog exactly."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sidrec.config import ModelConfig
from sidrec.errors import ConfigError
from sidrec.models.item_sid.network import HEADS, ItemSID, ItemSIDConfig
from sidrec.models.plugin import ModelPlugin, ModelShape

ITEM_INPUTS = ("codes", "text", "id")  # model.item_inputs: a comma-separated set of these


@dataclass
class ItemSIDOptions(ModelConfig):
    """model.* of the item-level SID model: ModelConfig's options and these."""

    arch: str = "item_sid"
    # catalog: one softmax over all items, item vectors composed from their SID codes and text |
    # levels (RPG-style): one softmax per SID level, an item scores the sum of its codes' log-probabilities.
    head: str = "catalog"
    # What an item vector is built from, a comma-separated set of codes (SID code embeddings), text
    # (projected text embedding), id (a learnt embedding per trained item; items added later have none).
    item_inputs: str = "codes,text"
    text_sim: bool = False  # add a learnt weight x cosine(item text, text of the last history item)


def build(model_cfg: ItemSIDOptions, shape: ModelShape) -> ItemSID:
    if model_cfg.head not in HEADS:
        raise ConfigError(f"model.head={model_cfg.head!r}: expected one of {', '.join(HEADS)}")
    inputs = {part.strip() for part in model_cfg.item_inputs.split(",") if part.strip()}
    if not inputs or not inputs <= set(ITEM_INPUTS):
        raise ConfigError(f"model.item_inputs={model_cfg.item_inputs!r}: expected a comma-separated set of "
                          f"{', '.join(ITEM_INPUTS)} (e.g. codes,text)")
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


def loss(model: ItemSID, batch: dict, ranker, model_cfg: ItemSIDOptions, label_smoothing: float):
    """A softmax over the catalog (or per SID level) at every position of the window."""
    window = torch.cat([batch["histories"], batch["targets"][:, None]], dim=1)
    ce = model.loss(window, ranker.features, label_smoothing)
    return ce, {"loss": ce}


PLUGIN = ModelPlugin("item_sid", ItemSIDOptions, build, loss, trains_on_windows=lambda model_cfg: True)
