import numpy as np
import torch

from sidrec.data.split import Samples
from sidrec.train.data import ShardedBatchSampler, batch_loader


def test_ranks_get_disjoint_batches_covering_the_data():
    n, bs = 103, 8
    seen = []
    for rank in range(2):
        sampler = ShardedBatchSampler(n, bs, shuffle=True, seed=3, rank=rank, world_size=2, drop_last=True)
        batches = list(sampler)
        assert len(batches) == len(sampler) == (n // 2) // bs
        assert all(len(b) == bs for b in batches)
        seen.append(np.concatenate(batches))
    assert not set(seen[0]) & set(seen[1])


def test_evaluation_sharding_covers_every_sample_once():
    n = 37
    parts = [np.concatenate(list(ShardedBatchSampler(n, 5, False, 0, r, 3, drop_last=False))) for r in range(3)]
    assert sorted(np.concatenate(parts).tolist()) == list(range(n))
    assert [len(ShardedBatchSampler(n, 5, False, 0, r, 3, drop_last=False)) for r in range(3)] == [3, 3, 3]


def test_epochs_reshuffle_deterministically():
    a = ShardedBatchSampler(50, 10, True, seed=1)
    b = ShardedBatchSampler(50, 10, True, seed=1)
    first_a, second_a = np.concatenate(list(a)), np.concatenate(list(a))
    assert np.array_equal(first_a, np.concatenate(list(b)))
    assert not np.array_equal(first_a, second_a)


def test_loader_yields_whole_batches():
    samples = Samples(np.arange(10), np.arange(30).reshape(10, 3), np.arange(10) * 2)
    batches = list(batch_loader(samples, 4, shuffle=False, seed=0, rank=0, world_size=1, drop_last=False))
    assert [len(b["targets"]) for b in batches] == [4, 4, 2]
    assert torch.equal(batches[0]["histories"][1], torch.tensor([3, 4, 5]))
    assert torch.equal(batches[2]["targets"], torch.tensor([16, 18]))


def bucketed(n, bs, lengths, seed=0, rank=0, world=1, pool=4):
    return ShardedBatchSampler(n, bs, True, seed, rank, world, drop_last=True, lengths=lengths, pool_batches=pool)


def test_bucketing_visits_every_sample_once_per_epoch_in_shuffled_length_sorted_batches():
    rng = np.random.default_rng(0)
    n, bs = 1003, 16
    lengths = rng.integers(1, 21, size=n)
    sampler = bucketed(n, bs, lengths)
    epochs = [list(sampler) for _ in range(2)]
    for batches in epochs:
        assert len(batches) == len(sampler)
        assert sorted(np.concatenate(batches).tolist()) == list(range(n))  # every sample exactly once
        # Within a pool of 4 batches the lengths are sorted, so a batch spans few lengths
        spread = np.mean([np.ptp(lengths[b]) for b in batches])
        assert spread < 0.5 * np.mean([np.ptp(lengths[rng.permutation(n)[:bs]]) for _ in range(20)])
        # ... while the batch order is shuffled, not sorted by length
        firsts = [lengths[b].min() for b in batches]
        assert firsts != sorted(firsts)
    assert not all(np.array_equal(a, b) for a, b in zip(*epochs))  # reshuffled between epochs
    again = bucketed(n, bs, lengths)
    assert all(np.array_equal(a, b) for a, b in zip(list(again), epochs[0]))  # seeded


def test_bucketing_shards_ranks_disjoint_with_equal_step_counts():
    n, bs = 101, 8
    lengths = np.arange(n) % 7
    parts = [list(bucketed(n, bs, lengths, rank=r, world=2)) for r in range(2)]
    assert len(parts[0]) == len(parts[1]) == len(bucketed(n, bs, lengths, rank=0, world=2))
    seen = [set(np.concatenate(p).tolist()) for p in parts]
    assert not seen[0] & seen[1] and len(seen[0] | seen[1]) == n - 1  # one sample left over for equal shares


def test_bucketed_loader_uses_history_lengths():
    histories = np.array([[-1, -1, 5], [1, 2, 3], [-1, 4, 5], [-1, -1, 6], [7, 8, 9], [-1, 1, 2]])
    samples = Samples(np.arange(6), histories, np.arange(6))
    loader = batch_loader(samples, 2, shuffle=True, seed=0, rank=0, world_size=1, drop_last=True, bucketed=True)
    for batch in loader:
        lengths = (batch["histories"] >= 0).sum(dim=1)
        assert lengths.min() == lengths.max()  # one pool: pairs of equal length


def test_resumed_sampler_continues_the_interrupted_epoch():
    lengths = np.arange(50) % 5
    whole = bucketed(50, 4, lengths, pool=2)
    batches = list(whole) + list(whole)  # two epochs
    resumed = bucketed(50, 4, lengths, pool=2)
    resumed.resume_at(len(resumed) + 3)  # 3 batches into the second epoch
    rest = list(resumed)
    assert len(rest) == len(resumed) - 3
    assert all(np.array_equal(a, b) for a, b in zip(rest, batches[len(resumed) + 3 :]))
