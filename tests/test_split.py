"""Leave-last-out split: the vectorised sample builders against plain per-user loops."""

from __future__ import annotations

import numpy as np
import pytest

from sidrec.data.dataset import from_sequences
from sidrec.data.split import PAD_ITEM, evaluation_samples, training_items, training_samples, training_windows


def make_dataset(sequences: list[list[int]]):
    num_items = max(max(s) for s in sequences) + 1
    items = [{"item_id": str(i)} for i in range(num_items)]
    users = [f"u{u}" for u in range(len(sequences))]
    return from_sequences("toy", items, users, [np.asarray(s) for s in sequences])


def left_padded(history: list[int], max_history: int) -> list[int]:
    history = history[-max_history:]
    return [PAD_ITEM] * (max_history - len(history)) + history


def naive_training(sequences, max_history, sliding_window):
    rows = []
    for user, seq in enumerate(sequences):
        train = seq[:-2]
        targets = range(1, len(train)) if sliding_window else ([len(train) - 1] if len(train) >= 2 else [])
        rows += [(user, left_padded(train[:t], max_history), train[t]) for t in targets]
    return rows


def as_rows(samples):
    return [(int(u), h.tolist(), int(t)) for u, h, t in zip(samples.users, samples.histories, samples.targets)]


SMALL = [[0, 1, 2], [3, 4, 5, 6], [1, 2, 3, 4, 5, 6, 7], [7, 6, 5, 4, 3, 2, 1, 0, 8, 9, 10, 11]]


def random_sequences(seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 30, size=rng.integers(3, 25)).tolist() for _ in range(40)]


@pytest.mark.parametrize("sequences", [SMALL, random_sequences(0), random_sequences(1)],
                         ids=["small", "random0", "random1"])
@pytest.mark.parametrize("max_history", [1, 3, 20])
@pytest.mark.parametrize("sliding_window", [True, False])
def test_training_samples_match_a_plain_loop(sequences, max_history, sliding_window):
    samples = training_samples(make_dataset(sequences), max_history, sliding_window=sliding_window)
    assert as_rows(samples) == naive_training(sequences, max_history, sliding_window)
    assert samples.histories.dtype == np.int64 and samples.histories.shape == (len(samples), max_history)


def test_sliding_windows_on_a_small_dataset_by_hand():
    samples = training_samples(make_dataset(SMALL[:3]), max_history=3)
    # user 0 trains on [0] only: no sample; user 1 on [3, 4]; user 2 on [1, 2, 3, 4, 5].
    assert as_rows(samples) == [
        (1, [-1, -1, 3], 4),
        (2, [-1, -1, 1], 2),
        (2, [-1, 1, 2], 3),
        (2, [1, 2, 3], 4),
        (2, [2, 3, 4], 5),
    ]


def test_without_augmentation_one_sample_per_user_with_two_training_items():
    samples = training_samples(make_dataset(SMALL[:3]), max_history=3, sliding_window=False)
    assert as_rows(samples) == [(1, [-1, -1, 3], 4), (2, [2, 3, 4], 5)]


@pytest.mark.parametrize("max_history", [2, 20])
def test_validation_and_test_targets_are_the_last_two_items(max_history):
    ds = make_dataset(SMALL)
    valid = evaluation_samples(ds, max_history, "valid")
    test = evaluation_samples(ds, max_history, "test")
    assert as_rows(valid) == [(u, left_padded(s[:-2], max_history), s[-2]) for u, s in enumerate(SMALL)]
    assert as_rows(test) == [(u, left_padded(s[:-1], max_history), s[-1]) for u, s in enumerate(SMALL)]


def test_histories_are_left_padded():
    valid = evaluation_samples(make_dataset([[4, 5, 6]]), max_history=4, stage="valid")
    assert valid.histories.tolist() == [[PAD_ITEM, PAD_ITEM, PAD_ITEM, 4]]


def test_unknown_stage_is_rejected():
    with pytest.raises(ValueError, match="stage"):
        evaluation_samples(make_dataset(SMALL), 3, "train")


def test_training_items_exclude_each_users_last_two():
    expected = [i for s in SMALL for i in s[:-2]]
    assert sorted(training_items(make_dataset(SMALL)).tolist()) == sorted(expected)


def test_subset_keeps_rows_aligned():
    samples = training_samples(make_dataset(SMALL), max_history=3)
    picked = samples.subset(np.array([4, 0]))
    assert as_rows(picked) == [as_rows(samples)[4], as_rows(samples)[0]]


def naive_windows(sequences, max_history):
    """Windows of max_history + 1 items cut from the end of each training sequence, one shared item."""
    rows = []
    for user, seq in enumerate(sequences):
        train, end = seq[:-2], len(seq) - 2
        while end >= 2:
            window = train[max(0, end - max_history - 1) : end]
            rows.append((user, left_padded(window[:-1], max_history), window[-1]))
            end -= max_history
    return rows


@pytest.mark.parametrize("sequences", [SMALL, random_sequences(0)], ids=["small", "random0"])
@pytest.mark.parametrize("max_history", [1, 3, 20])
def test_training_windows_cover_the_sliding_window_targets_once(sequences, max_history):
    windows = training_windows(make_dataset(sequences), max_history)
    assert sorted(as_rows(windows)) == sorted(naive_windows(sequences, max_history))
    # Every (user, target position) of the sliding window is a target of exactly one window
    per_user_targets = {}
    for user, history, target in as_rows(windows):
        items = [i for i in history if i != PAD_ITEM][1:] + [target]
        per_user_targets.setdefault(user, []).extend(items)
    sliding = training_samples(make_dataset(sequences), max_history)
    expected = {}
    for user, _, target in as_rows(sliding):
        expected.setdefault(user, []).append(target)
    assert {u: sorted(t) for u, t in per_user_targets.items()} == {u: sorted(t) for u, t in expected.items()}
