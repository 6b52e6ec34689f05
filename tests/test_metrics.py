import math

import numpy as np
import pytest
import torch

from sidrec.evaluate import compute_metrics, mean_std, ndcg_at_k, recall_at_k

RANKED = np.array([
    [4, 8, 15, 16, 23, 42],   # target 16 at rank 3
    [7, -1, -1, -1, -1, -1],  # target 7 at rank 0, the rest not found
    [1, 2, 3, 4, 5, 6],       # target 9 missed
    [9, 8, 7, 6, 5, 1],       # target 1 at rank 5
])
TARGETS = np.array([16, 7, 9, 1])


def test_hand_computed_cases():
    assert recall_at_k(RANKED, TARGETS, 3) == pytest.approx(1 / 4)
    assert recall_at_k(RANKED, TARGETS, 5) == pytest.approx(2 / 4)
    assert recall_at_k(RANKED, TARGETS, 6) == pytest.approx(3 / 4)
    # rank 3 -> 1/log2(5); rank 0 -> 1; rank 5 -> 1/log2(7)
    assert ndcg_at_k(RANKED, TARGETS, 3) == pytest.approx(1 / 4)
    assert ndcg_at_k(RANKED, TARGETS, 5) == pytest.approx((1 / math.log2(5) + 1) / 4)
    assert ndcg_at_k(RANKED, TARGETS, 6) == pytest.approx((1 / math.log2(5) + 1 + 1 / math.log2(7)) / 4)


def test_target_at_rank_3_of_a_single_user():
    ranked = np.array([[10, 11, 12, 13]])
    assert ndcg_at_k(ranked, np.array([12]), 10) == pytest.approx(0.5)  # 0-based rank 2 -> 1/log2(4)
    assert recall_at_k(ranked, np.array([12]), 10) == 1.0  # k beyond the list length is fine


def test_compute_metrics_accepts_tensors_and_names_keys():
    metrics = compute_metrics(torch.as_tensor(RANKED), torch.as_tensor(TARGETS), ks=(5, 10))
    assert list(metrics) == ["recall@5", "ndcg@5", "recall@10", "ndcg@10"]
    assert metrics["recall@5"] == pytest.approx(0.5)
    assert metrics["recall@10"] == pytest.approx(0.75)
    assert all(isinstance(v, float) for v in metrics.values())


def test_missing_items_never_match():
    ranked = np.full((2, 5), -1)
    assert recall_at_k(ranked, np.array([0, 3]), 5) == 0.0
    with pytest.raises(ValueError):
        recall_at_k(ranked, np.array([-1, 3]), 5)


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError):
        recall_at_k(RANKED, TARGETS[:2], 5)
    with pytest.raises(ValueError):
        ndcg_at_k(RANKED, TARGETS, 0)


def test_mean_std_over_seeds():
    runs = [{"recall@5": 0.1, "ndcg@5": 0.05}, {"recall@5": 0.2, "ndcg@5": 0.07}, {"recall@5": 0.3, "ndcg@5": 0.06}]
    summary = mean_std(runs)
    assert summary["recall@5"] == pytest.approx((0.2, 0.1))  # sample std, ddof=1
    assert summary["ndcg@5"] == pytest.approx((0.06, 0.01))
    assert mean_std(runs[:1]) == {"recall@5": (0.1, 0.0), "ndcg@5": (0.05, 0.0)}
    with pytest.raises(ValueError):
        mean_std([])
    with pytest.raises(ValueError):
        mean_std([{"recall@5": 0.1}, {"ndcg@5": 0.1}])


def test_paired_difference_and_its_interval():
    from sidrec.evaluate.metrics import paired_difference, t_quantile_975

    out = paired_difference({0: 0.2, 1: 0.4, 2: 0.3, 5: 9.0}, {0: 0.1, 1: 0.3, 2: 0.2, 3: 0.0})
    assert out["pairs"] == 3 and out["diff"] == pytest.approx(0.1)
    assert out["low"] == pytest.approx(0.1) and out["high"] == pytest.approx(0.1)  # identical diffs: no spread
    assert paired_difference({0: 1.0}, {0: 0.5}) is None
    assert t_quantile_975(2) == 4.303 and abs(t_quantile_975(30) - 2.042) < 0.01
