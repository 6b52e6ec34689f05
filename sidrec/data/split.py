"""Leave-last-out split and the (history -> next item) samples built from it, all vectorised.

For a user sequence s (length n >= 3): training items s[:n-2], validation target s[n-2] with
history s[:n-2], test target s[n-1] with history s[:n-1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sidrec.data.dataset import Dataset

PAD_ITEM = -1


@dataclass
class Samples:
    """Rows of (user, history, target): history is (num_samples, max_history), left-padded with -1."""

    users: np.ndarray  # (S,) int64
    histories: np.ndarray  # (S, max_history) int64, PAD_ITEM on the left
    targets: np.ndarray  # (S,) int64

    def __len__(self) -> int:
        return len(self.targets)

    def history_lengths(self) -> np.ndarray:
        """Real (non-padding) items per history."""
        return (self.histories != PAD_ITEM).sum(axis=1)

    def subset(self, index: np.ndarray) -> "Samples":
        return Samples(self.users[index], self.histories[index], self.targets[index])


def history_windows(seq_items: np.ndarray, starts: np.ndarray, ends: np.ndarray, max_history: int) -> np.ndarray:
    """For each row, the last ``max_history`` items of seq_items[start:end], left-padded with -1."""
    cols = np.arange(-max_history, 0, dtype=np.int64)
    positions = ends[:, None] + cols[None, :]
    valid = positions >= starts[:, None]
    return np.where(valid, seq_items[np.clip(positions, 0, None)], PAD_ITEM)


def training_samples(ds: Dataset, max_history: int, sliding_window: bool = True) -> Samples:
    """Sliding window: every prefix of a training sequence predicts its next item.
    Without it: one sample per user (the whole training sequence predicts its last item)."""
    starts, lengths = ds.seq_offsets[:-1], ds.sequence_lengths()
    train_lengths = lengths - 2
    if sliding_window:
        # Targets at positions 1..train_len-1 of each user's training sequence.
        counts = np.maximum(train_lengths - 1, 0)
        users = np.repeat(np.arange(ds.num_users, dtype=np.int64), counts)
        first = np.repeat(np.cumsum(counts) - counts, counts)
        target_pos = starts[users] + 1 + (np.arange(counts.sum(), dtype=np.int64) - first)
    else:
        users = np.flatnonzero(train_lengths >= 2).astype(np.int64)
        target_pos = starts[users] + train_lengths[users] - 1
    histories = history_windows(ds.seq_items, starts[users], target_pos, max_history)
    return Samples(users, histories, ds.seq_items[target_pos])


def training_windows(ds: Dataset, max_history: int) -> Samples:
    """All-positions training: each user's training sequence cut from its end into windows of up to
    ``max_history + 1`` items, consecutive windows sharing one item. A window is stored as a sample
    (its first items as the history, its last as the target) and trained on as one sequence in which
    every item but the first is a target, so each training item but the user's first is a target
    exactly once, as in the sliding window, for about 1/H of the samples."""
    starts, train_lengths = ds.seq_offsets[:-1], ds.sequence_lengths() - 2
    counts = np.where(train_lengths >= 2, -(-(train_lengths - 1) // max_history), 0)
    users = np.repeat(np.arange(ds.num_users, dtype=np.int64), counts)
    from_end = np.arange(counts.sum(), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    target_pos = starts[users] + train_lengths[users] - 1 - from_end * max_history
    window_starts = np.maximum(starts[users], target_pos - max_history)
    histories = history_windows(ds.seq_items, window_starts, target_pos, max_history)
    return Samples(users, histories, ds.seq_items[target_pos])


def evaluation_samples(ds: Dataset, max_history: int, stage: str) -> Samples:
    """One sample per user: stage "valid" predicts the second to last item, "test" the last."""
    if stage not in ("valid", "test"):
        raise ValueError(f"stage must be 'valid' or 'test', not {stage!r}")
    starts, ends = ds.seq_offsets[:-1], ds.seq_offsets[1:]
    target_pos = ends - (2 if stage == "valid" else 1)
    users = np.arange(ds.num_users, dtype=np.int64)
    histories = history_windows(ds.seq_items, starts, target_pos, max_history)
    return Samples(users, histories, ds.seq_items[target_pos])


def training_items(ds: Dataset) -> np.ndarray:
    """Items that occur in some user's training part (used to check for leakage and for popularity)."""
    mask = np.ones(ds.num_interactions, dtype=bool)
    ends = ds.seq_offsets[1:]
    mask[ends - 1] = False
    mask[ends - 2] = False
    return ds.seq_items[mask]
