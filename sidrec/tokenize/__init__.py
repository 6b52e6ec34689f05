"""SID tokenizers (RK-Means, R-VQ, RQ-VAE), the SID <-> item table, and SID diagnostics."""

from __future__ import annotations

from pathlib import Path

from sidrec.config import TokenizerConfig
from sidrec.errors import ConfigError
from sidrec.tokenize.base import KINDS, Tokenizer
from sidrec.tokenize.rkmeans import RKMeansTokenizer
from sidrec.tokenize.rvq import RVQTokenizer
from sidrec.tokenize.rqvae import RQVAETokenizer
from sidrec.tokenize.sid_table import SIDTable
from sidrec.tokenize.diagnostics import format_diagnostics, sid_diagnostics


def build_tokenizer(cfg: TokenizerConfig) -> Tokenizer:
    if cfg.kind not in KINDS:
        raise ConfigError(f"unknown tokenizer.kind {cfg.kind!r} (have: {', '.join(KINDS)})")
    return KINDS[cfg.kind](cfg)


def load_tokenizer(
    path: str | Path,
    expected_levels: int | None = None,
    expected_codes: int | None = None,
    expected_dim: int | None = None,
) -> Tokenizer:
    """Reads a file written by ``Tokenizer.save``; the kind is stored inside."""
    return Tokenizer.load(path, expected_levels, expected_codes, expected_dim)


__all__ = [
    "Tokenizer", "RKMeansTokenizer", "RVQTokenizer", "RQVAETokenizer", "SIDTable",
    "build_tokenizer", "load_tokenizer", "sid_diagnostics", "format_diagnostics",
]
