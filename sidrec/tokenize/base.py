"""The common tokenizer interface: input checks, chunked encoding, and one artifact format.

A tokenizer file is a ``torch.save`` of plain types and tensors (read back with
``weights_only=True``, so loading never runs pickled code):

    {"format", "version", "kind", "num_levels", "num_codes_per_level", "dim", "config", "state"}

A tokenizer is a subclass with its ``kind`` and its ``options`` (``tokenizer.*`` of that kind: a
subclass of ``sidrec.config.TokenizerConfig`` declared beside it); defining the class registers the
kind in ``KINDS``, and importing its module in ``sidrec/tokenize/__init__.py`` is the one registry line.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from sidrec import devices

from sidrec.config import TokenizerConfig
from sidrec.errors import ArtifactError, ConfigError, DataError
from sidrec.io import save_torch

FORMAT = "sidrec-tokenizer"
VERSION = 1
ENCODE_CHUNK = 65536  # rows per forward pass in encode: bounds memory for large catalogs

KINDS: dict[str, type["Tokenizer"]] = {}  # kind -> class, filled as the subclasses are defined


def resolve_device(name: str) -> torch.device:
    return devices.resolve_device(name, "tokenizer.device")


class Tokenizer:
    """Maps (N, d) embeddings to (N, L) integer codes in [0, W). Subclasses implement
    ``_fit``, ``_encode``, ``_reconstruct``, ``_state`` and ``_load_state`` on torch tensors."""

    kind = ""
    options: type[TokenizerConfig] = TokenizerConfig  # tokenizer.* of this kind

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.kind:
            KINDS[cls.kind] = cls

    def __init__(self, cfg: TokenizerConfig):
        if cfg.num_levels < 1 or cfg.num_codes_per_level < 2:
            raise ConfigError(
                f"tokenizer needs num_levels >= 1 and num_codes_per_level >= 2, "
                f"got {cfg.num_levels} x {cfg.num_codes_per_level}"
            )
        self.cfg = cfg
        self.num_levels = cfg.num_levels
        self.num_codes_per_level = cfg.num_codes_per_level
        self.device = resolve_device(cfg.device)
        self.dim: int | None = None  # embedding dimension, set by fit / load

    # ---- public API -------------------------------------------------------------------------

    def fit(self, embeddings: np.ndarray, seed: int, progress: bool = True) -> "Tokenizer":
        x = self._as_tensor(embeddings, fitting=True)
        if len(x) < self.num_codes_per_level:
            raise DataError(
                f"cannot fit {self.num_codes_per_level} codes per level on {len(x)} items; "
                f"lower tokenizer.num_codes_per_level"
            )
        self.dim = x.shape[1]
        # All randomness comes from this CPU generator: a seed makes the same draws on CPU and GPU
        # (codes can still differ there, where float rounding tips a near-tie).
        gen = torch.Generator().manual_seed(seed)
        self._fit(x, gen, progress)
        return self

    @torch.no_grad()
    def encode(self, embeddings: np.ndarray) -> np.ndarray:
        x = self._as_tensor(embeddings)
        codes = [self._encode(chunk).cpu() for chunk in x.split(ENCODE_CHUNK)]
        return torch.cat(codes).numpy().astype(np.int64)

    @torch.no_grad()
    def reconstruction_error(self, embeddings: np.ndarray) -> float | None:
        """Mean over items of the squared L2 distance between an embedding and its reconstruction
        from its codes alone (for unit-norm embeddings: the share of signal energy lost)."""
        x = self._as_tensor(embeddings)
        total = sum(((c - self._reconstruct(self._encode(c))) ** 2).sum().item() for c in x.split(ENCODE_CHUNK))
        return total / len(x)

    def save(self, path: str | Path) -> None:
        self._check_fitted()
        payload = {
            "format": FORMAT,
            "version": VERSION,
            "kind": self.kind,
            "num_levels": self.num_levels,
            "num_codes_per_level": self.num_codes_per_level,
            "dim": self.dim,
            "config": dataclasses.asdict(self.cfg),
            "state": {name: t.detach().cpu() for name, t in self._state().items()},
        }
        save_torch(path, payload)

    @classmethod
    def load(
        cls,
        path: str | Path,
        expected_levels: int | None = None,
        expected_codes: int | None = None,
        expected_dim: int | None = None,
    ) -> "Tokenizer":
        path = Path(path)
        payload = _read_payload(path)
        kind = payload["kind"]
        if kind not in KINDS or not issubclass(KINDS[kind], cls):
            expected = cls.kind or "one of " + ", ".join(KINDS)
            raise ArtifactError(f"{path}: holds a tokenizer of kind {kind!r}, expected {expected}")
        levels, codes, dim = payload["num_levels"], payload["num_codes_per_level"], payload["dim"]
        want_levels = levels if expected_levels is None else expected_levels
        want_codes = codes if expected_codes is None else expected_codes
        if (want_levels, want_codes) != (levels, codes):
            raise ArtifactError(f"{path}: tokenizer has L x W = {levels} x {codes}, "
                                f"but {want_levels} x {want_codes} is expected")
        if expected_dim is not None and expected_dim != dim:
            raise ArtifactError(f"{path}: tokenizer was fitted on {dim}-dim embeddings, "
                                f"but these are {expected_dim}-dim")
        # Files written before the tokenizers declared their own options hold every kind's: each reads its own.
        options = KINDS[kind].options
        known = {f.name for f in dataclasses.fields(options)}
        cfg = options(**{k: v for k, v in payload["config"].items() if k in known})
        # The artifact records what was fitted, not where: run wherever this machine allows.
        cfg = dataclasses.replace(cfg, kind=kind, num_levels=levels, num_codes_per_level=codes, device="auto")
        tok = KINDS[kind](cfg)
        tok.dim = dim
        try:
            tok._load_state({name: t.to(tok.device) for name, t in payload["state"].items()})
        except (KeyError, RuntimeError, ValueError) as exc:
            reason = str(exc).splitlines()[0]
            raise ArtifactError(f"{path}: tokenizer state does not match its header ({reason})") from None
        return tok

    # ---- helpers ----------------------------------------------------------------------------

    def _as_tensor(self, embeddings: np.ndarray, fitting: bool = False) -> torch.Tensor:
        if not fitting:
            self._check_fitted()
        x = np.asarray(embeddings)
        if x.ndim != 2 or len(x) == 0:
            raise DataError(f"embeddings must be a non-empty (N, d) array, got shape {x.shape}")
        if not fitting and x.shape[1] != self.dim:
            raise DataError(f"{self.kind} tokenizer was fitted on {self.dim}-dim embeddings, got {x.shape[1]}-dim")
        if not np.isfinite(x).all():
            raise DataError(f"embeddings contain NaN or inf ({int((~np.isfinite(x)).any(axis=1).sum())} rows)")
        return torch.as_tensor(x, dtype=torch.float32).to(self.device)

    def _check_fitted(self) -> None:
        if self.dim is None:
            raise RuntimeError(f"{self.kind} tokenizer is not fitted: call fit() or load() first")

    def _fit(self, x: torch.Tensor, gen: torch.Generator, progress: bool) -> None:
        raise NotImplementedError

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _reconstruct(self, codes: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _state(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        raise NotImplementedError


def _read_payload(path: Path) -> dict:
    if not path.is_file():
        raise ArtifactError(f"{path}: tokenizer file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types on a damaged file (zip, pickle, EOF)
        raise ArtifactError(f"{path}: not a readable tokenizer file ({type(exc).__name__})") from None
    header = ("kind", "num_levels", "num_codes_per_level", "dim", "config", "state")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or any(k not in payload for k in header):
        raise ArtifactError(f"{path}: not a sidrec tokenizer file")
    if not isinstance(payload["config"], dict) or not isinstance(payload["state"], dict):
        raise ArtifactError(f"{path}: tokenizer file has a malformed config or state")
    if payload.get("version") != VERSION:
        raise ArtifactError(f"{path}: tokenizer file version {payload.get('version')}, this sidrec reads {VERSION}")
    return payload
