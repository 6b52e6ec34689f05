"""``sidrec popularity``: every user gets the catalog's most popular items, the bar any trained model
must clear.

    sidrec popularity                                   # bundled Beauty
    sidrec popularity data.format=p5 data.path=... data.name=sports eval.ks=5,10,20

Items are ranked by their number of training interactions (``training_items``: no validation or test
item is counted), ties by item index, the same list for every user; nothing is excluded. Same
leave-last-out split and metrics as a main run; metrics.json holds the test metrics and the
validation ones as ``val_*``.
"""

from __future__ import annotations

import numpy as np

from sidrec.baselines.common import baseline_cli, finish_run, split_metrics, start_run
from sidrec.config import PopularityRunConfig, build_popularity_config
from sidrec.data.dataset import Dataset
from sidrec.data.split import training_items


def popular_items(dataset: Dataset) -> np.ndarray:
    """All item indices, most training interactions first (ties: lower index first)."""
    counts = np.bincount(training_items(dataset), minlength=dataset.num_items)
    return np.argsort(-counts, kind="stable")


def run_popularity(cfg: PopularityRunConfig, progress: bool = True) -> dict:
    run_dir, dataset = start_run(cfg, "popularity", progress)
    popular = popular_items(dataset)

    def rank(samples, k):
        top = np.full(k, -1, dtype=np.int64)
        top[: min(k, len(popular))] = popular[:k]
        return np.tile(top, (len(samples), 1))

    metrics = split_metrics(dataset, rank, cfg.ks(), cfg.eval.test, max_history=1)  # the history is not used
    return finish_run(run_dir, {**metrics, "model": "popularity"})


def cli(args: list[str]) -> None:
    """``sidrec popularity [key=value ...]``"""
    baseline_cli(args, "popularity", "Popularity", build_popularity_config, run_popularity)
