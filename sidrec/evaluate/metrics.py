"""Ranking metrics on ITEMS (never on SIDs), one held-out target item per user, full catalog.

``ranked`` is (B, K') item indices best first, as ``sidrec.decode.recommend`` returns them, with -1
where fewer than K' items were found; ``targets`` is (B,) item indices. Values are means over users.
"""

from __future__ import annotations

import numpy as np
import torch


def _hit_ranks(ranked, targets, k: int) -> np.ndarray:
    """0-based rank of each user's target within the first ``k`` items, or -1 if it is not there."""
    ranked = ranked.cpu().numpy() if isinstance(ranked, torch.Tensor) else np.asarray(ranked)
    targets = targets.cpu().numpy() if isinstance(targets, torch.Tensor) else np.asarray(targets)
    if ranked.ndim != 2 or targets.shape != (ranked.shape[0],):
        raise ValueError(f"ranked must be (B, K') and targets (B,), got {ranked.shape} and {targets.shape}")
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    if (targets < 0).any():
        raise ValueError("targets must be item indices >= 0")
    hits = ranked[:, :k] == targets[:, None]
    return np.where(hits.any(axis=1), hits.argmax(axis=1), -1)


def recall_at_k(ranked, targets, k: int) -> float:
    """Share of users whose target is among their first ``k`` items (a list shorter than k just has
    fewer chances)."""
    return float((_hit_ranks(ranked, targets, k) >= 0).mean())


def ndcg_at_k(ranked, targets, k: int) -> float:
    """Binary relevance, one target: 1 / log2(rank + 2) for a hit at 0-based ``rank`` < k, else 0.
    The ideal DCG is 1 (target at rank 0), so DCG is already normalised."""
    ranks = _hit_ranks(ranked, targets, k)
    gains = 1.0 / np.log2(np.maximum(ranks, 0) + 2.0)
    return float(np.where(ranks >= 0, gains, 0.0).mean())


def compute_metrics(ranked, targets, ks=(5, 10)) -> dict[str, float]:
    """``{"recall@5": .., "ndcg@5": .., "recall@10": .., ...}``"""
    metrics = {}
    for k in ks:
        metrics[f"recall@{k}"] = recall_at_k(ranked, targets, k)
        metrics[f"ndcg@{k}"] = ndcg_at_k(ranked, targets, k)
    return metrics


def mean_std(runs: list[dict[str, float]]) -> dict[str, tuple[float, float]]:
    """Mean and sample std (ddof=1; 0 for a single run) of each metric over runs (e.g. seeds)."""
    if not runs:
        raise ValueError("mean_std needs at least one run")
    names = list(runs[0])
    if any(set(run) != set(names) for run in runs):
        raise ValueError("all runs must report the same metrics")
    summary = {}
    for name in names:
        values = np.array([run[name] for run in runs], dtype=np.float64)
        std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        summary[name] = (float(values.mean()), std)
    return summary


# Two-sided 95% quantiles of Student's t for 1..10 degrees of freedom (beyond: the normal's 1.96
# plus the first-order correction 2.4/df, within 0.3% of the exact value up to df 30).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def t_quantile_975(df: int) -> float:
    if df < 1:
        raise ValueError("a confidence interval needs at least 2 paired values")
    return _T975[df - 1] if df <= len(_T975) else 1.96 + 2.4 / df


def paired_difference(values: dict[int, float], baseline: dict[int, float]) -> dict[str, float] | None:
    """Mean of ``values[s] - baseline[s]`` over the keys (seeds) both have, with its 95% confidence
    interval (Student's t); None with fewer than 2 pairs. Pairing by seed removes what a seed does
    to both rows alike (data order, initialisation), so the interval is narrower than the rows' stds."""
    seeds = sorted(set(values) & set(baseline))
    if len(seeds) < 2:
        return None
    diffs = np.array([values[s] - baseline[s] for s in seeds], dtype=np.float64)
    mean, half = float(diffs.mean()), t_quantile_975(len(diffs) - 1) * float(diffs.std(ddof=1)) / np.sqrt(len(diffs))
    return {"diff": mean, "low": mean - half, "high": mean + half, "pairs": len(seeds)}
