"""Training SASRec (sidrec/train/sasrec.py): full-catalog ranking, the shared metrics, learning."""

import numpy as np
import pytest
import torch

from sidrec.config import build_sasrec_config
from sidrec.data.loaders import load_dataset
from sidrec.data.split import evaluation_samples
from sidrec.evaluate.metrics import compute_metrics
from sidrec.train.sasrec import evaluate_sasrec, rank_all_items, train_sasrec

TINY_DATA = ["data.format=p5", "data.name=tiny"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_ranking_is_top_k_over_the_whole_catalog_and_uses_the_shared_metrics():
    class Fixed(torch.nn.Module):
        def score_last(self, h):  # item 0 best, then 1, 2, ...
            return -torch.arange(12, dtype=torch.float32).expand(len(h), 12)

    histories = np.array([[-1, 3], [4, 5], [1, 2]])
    ranked = rank_all_items(Fixed(), histories, 10, batch_size=2, device="cpu")
    assert ranked.tolist() == [list(range(10))] * 3  # history items are not excluded
    excluded = rank_all_items(Fixed(), histories, 10, batch_size=2, device="cpu", exclude_history=True)
    assert excluded.tolist() == [[0, 1, 2, 4, 5, 6, 7, 8, 9, 10], [0, 1, 2, 3, 6, 7, 8, 9, 10, 11],
                                 [0, 3, 4, 5, 6, 7, 8, 9, 10, 11]]  # padding (-1) excludes nothing
    metrics = compute_metrics(ranked, np.array([0, 4, 11]))
    assert metrics["recall@5"] == pytest.approx(2 / 3) and metrics["recall@10"] == pytest.approx(2 / 3)
    assert metrics["ndcg@5"] == pytest.approx((1 + 1 / np.log2(6)) / 3)


def test_learns_the_topic_structure_of_the_tiny_data(tiny_p5, tmp_path):
    # users buy within one of 4 topics of 10 items: top-10 by topic would give recall@10 near 1,
    # random ranking 0.25
    cfg = build_sasrec_config(["preset=tiny", *TINY_DATA, f"data.path={tiny_p5}", "sasrec.max_epochs=40",
                               "sasrec.patience=40", "sasrec.d_model=32", "sasrec.dropout=0.1", "sasrec.lr=0.01",
                               "seed=1"])
    dataset = load_dataset(cfg.data)
    model, summary = train_sasrec(cfg, dataset, tmp_path, progress=False)
    assert (tmp_path / "log.csv").read_text().count("\n") == summary["epochs"] + 1  # header + one per epoch
    metrics = evaluate_sasrec(model, evaluation_samples(dataset, 5, "test"), [10], 64, "cpu")
    assert metrics["recall@10"] > 0.5
