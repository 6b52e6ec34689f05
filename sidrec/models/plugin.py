"""What a model plug-in declares. A model is one folder under ``sidrec/models/<name>/``:

    network.py   the nn.Module and its dataclass config; plain PyTorch, imports only torch (and layers.py)
    plugin.py    its options: a subclass of ``sidrec.config.ModelConfig`` whose fields (defaults,
                 comments, ``LIMITS``) are the ``model.<option>`` keys of ``model.arch=<name>``;
                 ``PLUGIN = ModelPlugin(...)``: the options class, how they build the network, its
                 training objective, and which training samples that objective reads
    __init__.py  re-exports the network

and one line in ``sidrec/models/registry.py``: no edit of ``sidrec/config.py`` or the trainer. Ranking
follows from the network: one with ``ranks_catalog = True`` scores every item (``user_states`` +
``scores``) and the Ranker takes an exact top-k; any other is a SID generator (``prefill`` /
``decode_step`` / ``reorder_cache``) ranked by beam search over the SID trie. Both need no code
outside the folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from sidrec.config import ModelConfig


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
    options: type[ModelConfig]  # model.* of this arch: ModelConfig's options and the plug-in's own
    build: Callable[[ModelConfig, ModelShape], nn.Module]  # raises ConfigError on settings it cannot honour
    loss: Objective
    # True: the objective reads all-positions windows (``sidrec.data.split.training_windows``, each
    # window one causal sequence whose every item but the first is a target); False: sliding-window
    # (history -> next item) samples.
    trains_on_windows: Callable[[ModelConfig], bool] = lambda model_cfg: False
