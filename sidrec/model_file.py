"""The inference artifact ``model.pt``: network weights + everything needed to rebuild it and to
check it against the run's SID table (a SASRec baseline's has item ids, no SID table). Loading it
needs torch and sidrec.models only."""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
from pathlib import Path

import numpy as np
import torch

from sidrec.config import ModelConfig, option_archs, stored_model_config
from sidrec.errors import ArtifactError, SidrecError
from sidrec.io import save_torch
from sidrec.models import build_model
from sidrec.models.sasrec import SASRec
from sidrec.tokenize.vocab import SIDVocab

FORMAT_VERSION = 1


def sid_fingerprint(sids: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(sids, dtype=np.int64).tobytes()).hexdigest()[:16]


def model_meta(model_cfg: ModelConfig, vocab: SIDVocab, sids: np.ndarray, text_dim: int = 0) -> dict:
    """``text_dim``: width of the item text embeddings an item-scoring model reads (item_sid)."""
    return {
        "format_version": FORMAT_VERSION,
        "model_config": dataclasses.asdict(model_cfg),
        "vocab": vocab.to_dict(),
        "max_source_len": source_length(model_cfg, vocab),
        "target_len": vocab.num_levels,
        "sid_fingerprint": sid_fingerprint(sids),
        "num_items": int(sids.shape[0]),
        "text_dim": int(text_dim),
    }


def sasrec_meta(network: dict, training: dict) -> dict:
    """network: SASRec's constructor arguments (``sidrec.train.sasrec.network_config``)."""
    return {"format_version": FORMAT_VERSION, "model": "sasrec", "model_config": network, "training": training}


def source_length(model_cfg: ModelConfig, vocab: SIDVocab) -> int:
    return model_cfg.max_history * vocab.num_levels + (1 if vocab.num_user_tokens else 0)


def build_from_meta(meta: dict) -> torch.nn.Module:
    if meta.get("model") == "sasrec":
        return SASRec(**meta["model_config"])
    vocab = SIDVocab.from_dict(meta["vocab"])
    model_cfg = stored_model_config(meta["model_config"], "model_config")
    return build_model(model_cfg, vocab.size, meta["max_source_len"], meta["target_len"],
                       level_sizes=vocab.level_sizes, text_dim=meta.get("text_dim", 0), num_items=meta.get("num_items", 0))


def save_model_file(path: str | Path, model: torch.nn.Module, meta: dict) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_torch(path, {"sidrec": meta, "state_dict": state})


def check_meta(meta: dict, sids: np.ndarray, vocab: SIDVocab, source: str) -> None:
    """A model is only meaningful with the SID table it was trained on."""
    if SIDVocab.from_dict(meta["vocab"]) != vocab:
        raise ArtifactError(f"{source}: model vocabulary {meta['vocab']} does not match the run's {vocab.to_dict()}")
    # Cold-start items (sidrec.cold_start) are appended after the rows the model was trained on.
    sids = sids[: meta.get("num_items", len(sids))]
    if meta["sid_fingerprint"] != sid_fingerprint(sids):
        raise ArtifactError(
            f"{source}: model was trained on another SID table (fingerprint {meta['sid_fingerprint']} != "
            f"{sid_fingerprint(sids)}); re-train or point at the matching run directory"
        )


def load_model_file(path: str | Path, map_location="cpu") -> tuple[torch.nn.Module, dict]:
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path}: model file not found (train first)")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
        meta, state = blob["sidrec"], blob["state_dict"]
    except Exception as exc:
        raise ArtifactError(f"{path}: corrupted or not a sidrec model file ({type(exc).__name__}: {exc})".splitlines()[0]) from None
    if meta.get("model") == "sasrec":
        known = set(inspect.signature(SASRec).parameters)
    else:  # any plug-in's option: model files written before plug-ins declared their own hold every one
        known = {name for name in meta.get("model_config", {}) if option_archs(name)}
    unknown = sorted(set(meta.get("model_config", {})) - known)
    if unknown:
        raise ArtifactError(f"{path}: unknown model config key(s) {unknown} (a model file of another sidrec "
                            "version?)")
    try:
        model = build_from_meta(meta)
    except SidrecError as exc:  # e.g. a model.arch this version does not have
        raise ArtifactError(f"{path}: the stored model config does not build a model here ({exc})") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ArtifactError(f"{path}: weights do not fit the stored model config ({str(exc).splitlines()[0]})") from None
    return model.eval(), meta
