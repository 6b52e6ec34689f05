"""Evaluation: ranking metrics over recommended items."""

from sidrec.evaluate.metrics import compute_metrics, mean_std, ndcg_at_k, recall_at_k

__all__ = ["compute_metrics", "mean_std", "ndcg_at_k", "recall_at_k"]
