"""Most-popular baseline on the bundled Beauty split (or a run's dataset): every user gets the items
with the most training interactions, ranked by count, on the validation and the test split.

    python benchmarks/popularity.py [--run-dir runs/...]

The bar any trained model must clear; the closing line is ``popularity_test_recall@10: <x>``.
"""

from __future__ import annotations

import argparse

import numpy as np

from sidrec.data.dataset import Dataset
from sidrec.data.loaders import load_bundled
from sidrec.data.split import evaluation_samples, training_items
from sidrec.evaluate.metrics import compute_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", default="", help="use this run's dataset (default: bundled Beauty)")
    args = parser.parse_args()
    dataset = Dataset.load(args.run_dir) if args.run_dir else load_bundled("beauty")
    counts = np.bincount(training_items(dataset), minlength=dataset.num_items)
    popular = np.argsort(-counts, kind="stable")[:10]
    for stage in ("valid", "test"):
        targets = evaluation_samples(dataset, 1, stage).targets
        metrics = compute_metrics(np.tile(popular, (len(targets), 1)), targets, ks=[5, 10])
        print(f"{stage}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    print(f"popularity_test_recall@10: {metrics['recall@10']:.4f}")


if __name__ == "__main__":
    main()
