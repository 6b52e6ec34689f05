"""A split's users -> ranked items (through ``sidrec.decode.Ranker``) -> full-catalog metrics.

Used by validation during training, ``sidrec evaluate``, ``sidrec predict`` and the experiments."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from sidrec.data.split import Samples
from sidrec.decode.ranker import Ranker
from sidrec.evaluate.metrics import compute_metrics
from sidrec.evaluate.predictions import PredictionWriter


def rank_batches(model, ranker: Ranker, samples: Samples, k: int, batch_size: int, seed: int,
                 progress: bool = True, desc: str = "ranking") -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(sample rows, (b, k) ranked items, (b, k) scores) per batch. Batches are formed over the
    samples sorted by history length, so a batch carries little padding (the models' outputs do not
    depend on it)."""
    rng = np.random.default_rng(seed)
    order = np.argsort(samples.history_lengths(), kind="stable")
    was_training = model.training
    model.eval()
    try:
        for start in tqdm(range(0, len(samples), batch_size), desc=desc, disable=not progress, leave=False):
            rows = order[start : start + batch_size]
            ranked, scores = ranker.rank(model, torch.from_numpy(samples.histories[rows]),
                                         torch.from_numpy(samples.users[rows]), k, rng)
            yield rows, ranked, scores
    finally:
        model.train(was_training)


def rank_samples(model, ranker: Ranker, samples: Samples, k: int, batch_size: int, seed: int,
                 progress: bool = True, desc: str = "ranking") -> np.ndarray:
    """(len(samples), k) ranked items, in the samples' order."""
    ranked = np.zeros((len(samples), k), dtype=np.int64)
    for rows, batch, _ in rank_batches(model, ranker, samples, k, batch_size, seed, progress, desc):
        ranked[rows] = batch
    return ranked


def evaluate(model, ranker: Ranker, samples: Samples, ks: list[int], batch_size: int, seed: int,
             progress: bool = True, desc: str = "evaluating", predictions: PredictionWriter | None = None) -> dict[str, float]:
    """Metrics at ``ks`` over ``samples``; ``predictions`` also receives every batch (``sidrec evaluate
    predictions=...``, ``sidrec predict``)."""
    k = max(ks)
    ranked = np.zeros((len(samples), k), dtype=np.int64)
    for rows, batch, scores in rank_batches(model, ranker, samples, k, batch_size, seed, progress, desc):
        ranked[rows] = batch
        if predictions is not None:
            predictions.write(samples.users[rows], batch, scores, samples.targets[rows])
    return compute_metrics(ranked, samples.targets, ks=ks)
