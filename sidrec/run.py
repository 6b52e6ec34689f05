"""A run directory opened: the one door to a finished run's artifacts (named in ``sidrec.layout``).

Everything that uses a finished run (``sidrec evaluate`` / ``predict``, ``Recommender.load``, cold
start, serving, the experiments' decoding timer) opens it through ``RunDir``.

Imports no training code.
"""

from __future__ import annotations

import dataclasses
from functools import cached_property
from pathlib import Path

import numpy as np

from sidrec.config import DecodeConfig, RunConfig, build_config, load_config
from sidrec.data.dataset import Dataset
from sidrec.data.split import Samples, evaluation_samples
from sidrec.decode.ranker import Ranker
from sidrec.errors import ArtifactError, ConfigError
from sidrec.layout import CONFIG, EMBEDDINGS, ITEMS, MODEL, SEQUENCES, SID_TABLE, load_metrics
from sidrec.model_file import check_meta, load_model_file
from sidrec.tokenize.sid_table import SIDTable
from sidrec.tokenize.vocab import SIDVocab

SPLITS = ("valid", "test")


def check_split(split: str, key: str = "split") -> str:
    if split not in SPLITS:
        raise ConfigError(f"{key}={split!r}: expected valid or test")
    return split


def build_ranker(decode: DecodeConfig, sid_table: SIDTable, vocab: SIDVocab, device="cpu",
                 fallback_items: np.ndarray | None = None, items: np.ndarray | None = None,
                 item_text: np.ndarray | None = None) -> Ranker:
    """The Ranker a config's ``decode`` section describes; ``item_text``: the catalog's text
    embeddings (read by item-scoring models, model.arch=item_sid)."""
    return Ranker(sid_table, vocab, num_beams=decode.num_beams, constrained=decode.constrained,
                  exclude_history=decode.exclude_history, device=device, fallback_items=fallback_items,
                  items=items, precision=decode.precision, item_text=item_text)


def check_model_overrides(model_cfg, trained: dict, source: str) -> None:
    """model.* is fixed by the model file; only model.max_history may be lowered (the model then
    reads fewer items; more than it was trained with would index positions it never learned)."""
    for name, value in dataclasses.asdict(model_cfg).items():
        was = trained.get(name, value)
        if name == "max_history" and 1 <= value <= was:
            continue
        if value != was:
            hint = f"at most {was}" if name == "max_history" else "model.* is fixed when the model is trained"
            raise ConfigError(f"model.{name}={value!r}: {source} was trained with {was!r} ({hint})")


def load_catalog(run_dir: str | Path) -> tuple[Dataset, SIDTable, np.ndarray]:
    """Dataset, SID table and embeddings of a run, checked to describe the same items."""
    run_dir = Path(run_dir)
    dataset = load_dataset_files(run_dir)
    table = SIDTable.load(run_dir / SID_TABLE)
    embeddings = np.load(run_dir / EMBEDDINGS, mmap_mode="r")
    if not (dataset.num_items == table.num_items == embeddings.shape[0]):
        raise ArtifactError(f"{run_dir}: catalog files disagree: {dataset.num_items} items, "
                            f"{table.num_items} SIDs, {embeddings.shape[0]} embeddings")
    return dataset, table, embeddings


def load_dataset_files(run_dir: str | Path) -> Dataset:
    return Dataset.load(Path(run_dir) / ITEMS, Path(run_dir) / SEQUENCES)


def save_dataset_files(dataset: Dataset, run_dir: str | Path) -> None:
    dataset.save(Path(run_dir) / ITEMS, Path(run_dir) / SEQUENCES)


class RunDir:
    """A run directory opened for reading; ``overrides`` (``key=value``) apply on top of its config.json."""

    def __init__(self, path: str | Path, overrides: list[str] | None = None):
        self.path = Path(path)
        if not (self.path / CONFIG).is_file():
            raise ArtifactError(f"{self.path}: not a run directory (no {CONFIG})")
        self.overrides = list(overrides or [])

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @cached_property
    def config(self) -> RunConfig:
        cfg = load_config(self.path / CONFIG)
        return build_config(self.overrides, base=cfg) if self.overrides else cfg

    @cached_property
    def _catalog(self) -> tuple[Dataset, SIDTable, np.ndarray]:
        return load_catalog(self.path)

    @property
    def dataset(self) -> Dataset:
        return self._catalog[0]

    @property
    def sid_table(self) -> SIDTable:
        return self._catalog[1]

    @property
    def embeddings(self) -> np.ndarray:
        """(num_items, dim), memory-mapped."""
        return self._catalog[2]

    @property
    def vocab(self) -> SIDVocab:
        return SIDVocab.for_table(self.sid_table, self.config.model.user_tokens())

    def model(self):
        """(model in eval mode on the CPU, its meta), checked against this run's SID table and config."""
        path = self.path / MODEL
        model, meta = load_model_file(path)
        check_model_overrides(self.config.model, meta["model_config"], str(path))
        check_meta(meta, self.sid_table.sids, self.vocab, str(path))
        return model, meta

    def ranker(self, device="cpu", fallback_items: np.ndarray | None = None) -> Ranker:
        return build_ranker(self.config.decode, self.sid_table, self.vocab, device, fallback_items,
                            item_text=self.embeddings)

    def samples(self, split: str) -> Samples:
        """The ``valid`` or ``test`` samples of the run's dataset, with the config's history length."""
        return evaluation_samples(self.dataset, self.config.model.max_history, check_split(split))

    def metrics(self) -> dict:
        return load_metrics(self.path)
