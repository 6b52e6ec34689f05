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
