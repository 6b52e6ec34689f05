"""SID tokenizers (RK-Means, R-VQ, RQ-VAE), the SID <-> item table, and SID diagnostics.

The tokenizer modules imported below are the registry of ``tokenizer.kind`` (``base.KINDS``): adding
a tokenizer is its module (its class and its options) and one import line here."""

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
        raise ConfigError(f"tokenizer.kind={cfg.kind!r}: expected one of {', '.join(KINDS)}")
    cls = KINDS[cfg.kind]
    if not isinstance(cfg, cls.options):
        raise ConfigError(f"tokenizer.kind={cfg.kind}: expected its options ({cls.options.__name__}, e.g. "
                          f"sidrec.config.tokenizer_config({cfg.kind!r}, ...)), got {type(cfg).__name__}")
    return cls(cfg)


def load_tokenizer(
    path: str | Path,
    expected_levels: int | None = None,
    expected_codes: int | None = None,
    expected_dim: int | None = None,
) -> Tokenizer:
    """Reads a file written by ``Tokenizer.save``; the kind is stored inside."""
    return Tokenizer.load(path, expected_levels, expected_codes, expected_dim)


__all__ = [
    "KINDS", "Tokenizer", "RKMeansTokenizer", "RVQTokenizer", "RQVAETokenizer", "SIDTable",
    "build_tokenizer", "load_tokenizer", "sid_diagnostics", "format_diagnostics",
]
